//! OData v4 query options for the Microsoft Graph subset that Keyward serves.
//!
//! Only `$filter` lives here for now: [`parse_filter`] turns the (already URL-decoded) text of a
//! `$filter` query option into an [`Expr`], and `Expr`'s `Display` prints it back as canonical OData.

pub mod eval;
pub mod filter;

pub use filter::{
    CmpOp, Expr, FilterError, Literal, MAX_DEPTH, MAX_IN_VALUES, MAX_INPUT_LEN, Path, StrFunc, parse_filter,
};
