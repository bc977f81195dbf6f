//! OData v4 query options for the Microsoft Graph subset that Keyward serves.
//!
//! Only `$filter` lives here for now: [`parse_filter`] turns the (already URL-decoded) text of a
//! `$filter` query option into an [`Expr`], and `Expr`'s `Display` prints it back as canonical OData.

pub mod eval;
pub mod filter;

pub use filter::{
    CmpOp, Expr, FilterError, Literal, MAX_DEPTH, MAX_IN_VALUES, MAX_INPUT_LEN, Path, StrFunc, parse_filter,
};

/// The clauses of a filter made only of `property eq 'text'` (or a GUID) joined with `and`, as
/// (property path, text) pairs in the order written; `Err` with the first clause of another form.
/// For collections that Graph filters by equality only (role assignments, permission grants).
pub fn eq_clauses(expr: Expr) -> Result<Vec<(String, String)>, Expr> {
    eq_or_in_clauses(expr)?
        .into_iter()
        .map(|(name, mut values)| match values.len() {
            1 => Ok((name, values.remove(0))),
            _ => Err(Expr::In { path: Path(vec![name]), values: values.into_iter().map(Literal::String).collect() }),
        })
        .collect()
}

/// Like [`eq_clauses`], also taking `property in ('a','b')`: each clause's property and the
/// values it accepts (one for `eq`).
pub fn eq_or_in_clauses(expr: Expr) -> Result<Vec<(String, Vec<String>)>, Expr> {
    Ok(value_clauses(expr, false)?.into_iter().map(|it| (it.property, it.values)).collect())
}

/// Like [`eq_or_in_clauses`], also taking `property ne 'text'` (a clause that refuses its value).
pub fn eq_in_or_ne_clauses(expr: Expr) -> Result<Vec<ValueClause>, Expr> {
    value_clauses(expr, true)
}

/// One clause of a filter of text values joined with `and`: the property and the values it
/// takes (`eq`, `in`) or, `negated`, refuses (`ne`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueClause {
    pub property: String,
    pub values: Vec<String>,
    pub negated: bool,
}

/// The clauses in the order written, `ne` among them only when `takes_ne`; `Err` with the first
/// clause of another form.
fn value_clauses(expr: Expr, takes_ne: bool) -> Result<Vec<ValueClause>, Expr> {
    let mut res = Vec::new();
    let mut clauses = vec![expr];
    while let Some(clause) = clauses.pop() {
        match clause {
            Expr::And(left, right) => {
                clauses.push(*right);
                clauses.push(*left);
            }
            Expr::Compare { path, op, value: Literal::String(text) | Literal::Guid(text) }
                if op == CmpOp::Eq || (takes_ne && op == CmpOp::Ne) =>
            {
                res.push(ValueClause { property: path.to_string(), values: vec![text], negated: op == CmpOp::Ne });
            }
            Expr::In { path, values }
                if values.iter().all(|it| matches!(it, Literal::String(_) | Literal::Guid(_))) =>
            {
                let texts = values
                    .into_iter()
                    .filter_map(|it| match it {
                        Literal::String(text) | Literal::Guid(text) => Some(text),
                        _ => None,
                    })
                    .collect();
                res.push(ValueClause { property: path.to_string(), values: texts, negated: false });
            }
            other => return Err(other),
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_clauses_come_back_in_order_or_the_first_other_clause() {
        let expr =
            parse_filter("a eq 'x' and (b eq 'y' and c eq 00000000-0000-0000-0000-000000000001)").expect("parse");
        let pairs = eq_clauses(expr).expect("only eq");
        assert_eq!(pairs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        let other = eq_clauses(parse_filter("a eq 'x' or b eq 'y'").expect("parse")).expect_err("or");
        assert!(matches!(other, Expr::Or(..)));
        assert!(eq_clauses(parse_filter("a eq 'x' and startswith(b,'y')").expect("parse")).is_err());
        let lists = eq_or_in_clauses(parse_filter("a in ('x', 'y') and b eq 'z'").expect("parse")).expect("eq and in");
        assert_eq!(
            lists,
            vec![("a".to_owned(), vec!["x".to_owned(), "y".to_owned()]), ("b".to_owned(), vec!["z".to_owned()])]
        );
        assert!(eq_clauses(parse_filter("a in ('x', 'y')").expect("parse")).is_err(), "eq_clauses takes one value");
        assert!(eq_or_in_clauses(parse_filter("a in (true)").expect("parse")).is_err());
        assert!(eq_or_in_clauses(parse_filter("a ne 'x'").expect("parse")).is_err(), "ne only where asked for");
        let with_ne = eq_in_or_ne_clauses(parse_filter("a eq 'x' and b ne 'y'").expect("parse")).expect("eq and ne");
        assert_eq!(
            with_ne.iter().map(|it| (it.property.as_str(), it.negated)).collect::<Vec<_>>(),
            [("a", false), ("b", true)]
        );
    }
}
