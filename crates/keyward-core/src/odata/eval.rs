//! Evaluating a `$filter` in memory, for small collections held by the core (role definitions,
//! resource actions) rather than the database.

use crate::odata::{CmpOp, Expr, Literal, StrFunc};

/// A property value of an in-memory object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Str(&'a str),
    Bool(bool),
    Null,
    /// A collection of strings (`servicePrincipalNames`), for `any` lambdas.
    Strs(Vec<&'a str>),
}

/// Whether the object whose properties `get` returns matches `expr`. Unknown properties and
/// unsupported forms never match (the planner refuses them before this runs).
pub fn matches<'a>(expr: &Expr, get: &dyn Fn(&str) -> Option<Value<'a>>) -> bool {
    match expr {
        Expr::And(left, right) => matches(left, get) && matches(right, get),
        Expr::Or(left, right) => matches(left, get) || matches(right, get),
        Expr::Not(inner) => !matches(inner, get),
        Expr::Compare { path, op, value } => {
            let [name] = path.0.as_slice() else { return false };
            let Some(actual) = get(name) else { return false };
            let is_equal = equals(&actual, value);
            match op {
                CmpOp::Eq => is_equal,
                CmpOp::Ne => !is_equal,
                _ => false,
            }
        }
        Expr::In { path, values } => {
            let [name] = path.0.as_slice() else { return false };
            get(name).is_some_and(|actual| values.iter().any(|it| equals(&actual, it)))
        }
        Expr::Func { func, path, value: Literal::String(text) } => {
            let [name] = path.0.as_slice() else { return false };
            let Some(Value::Str(actual)) = get(name) else { return false };
            let (actual, text) = (actual.to_lowercase(), text.to_lowercase());
            match func {
                StrFunc::StartsWith => actual.starts_with(&text),
                StrFunc::EndsWith => actual.ends_with(&text),
            }
        }
        Expr::Any { collection, var, body } => {
            let [name] = collection.0.as_slice() else { return false };
            let Some(Value::Strs(items)) = get(name) else { return false };
            items.iter().any(|item| {
                let element = |name: &str| if name == var { Some(Value::Str(item)) } else { get(name) };
                matches(body, &element)
            })
        }
        _ => false,
    }
}

fn equals(actual: &Value<'_>, literal: &Literal) -> bool {
    match (actual, literal) {
        (Value::Str(it), Literal::String(text) | Literal::Guid(text)) => it.eq_ignore_ascii_case(text),
        (Value::Bool(it), Literal::Bool(flag)) => it == flag,
        (Value::Null, Literal::Null) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odata::parse_filter;

    #[test]
    fn evaluates_equality_functions_and_logic() {
        let get = |name: &str| match name {
            "displayName" => Some(Value::Str("Helpdesk Administrator")),
            "isBuiltIn" => Some(Value::Bool(true)),
            "names" => Some(Value::Strs(vec!["a", "api://b"])),
            _ => None,
        };
        for (filter, expected) in [
            ("displayName eq 'helpdesk administrator'", true),
            ("isBuiltIn eq false", false),
            ("startswith(displayName,'Help') and isBuiltIn eq true", true),
            ("displayName in ('A','Helpdesk Administrator')", true),
            ("not(isBuiltIn eq true) or displayName eq 'x'", false),
            ("unknown eq 'x'", false),
            ("names/any(n:n eq 'API://B')", true),
            ("names/any(n:startswith(n,'c'))", false),
            ("displayName/any(n:n eq 'x')", false),
        ] {
            let expr = parse_filter(filter).expect(filter);
            assert_eq!(matches(&expr, &get), expected, "{filter}");
        }
    }
}
