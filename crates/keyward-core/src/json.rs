//! The two JSON encodings the audit model needs: a string literal and an array of string literals.
//!
//! Entra writes `modifiedProperties` values as JSON text inside strings; producing that text is a
//! rule of the audit model, so it lives here without a serialization framework.

/// Encodes `value` as a JSON string literal, quotes included.
pub fn string(value: &str) -> String {
    let mut res = String::with_capacity(value.len() + 2);
    res.push('"');
    for ch in value.chars() {
        match ch {
            '"' => res.push_str("\\\""),
            '\\' => res.push_str("\\\\"),
            '\n' => res.push_str("\\n"),
            '\r' => res.push_str("\\r"),
            '\t' => res.push_str("\\t"),
            c if (c as u32) < 0x20 => res.push_str(&format!("\\u{:04x}", c as u32)),
            c => res.push(c),
        }
    }
    res.push('"');
    res
}

/// Encodes a list of strings as a JSON array of string literals.
pub fn string_array<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = values.into_iter().map(string).collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(super::string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(super::string("x\u{1}y"), r#""x\u0001y""#);
        assert_eq!(super::string_array(["a", "b"]), r#"["a","b"]"#);
        assert_eq!(super::string_array([]), "[]");
    }
}
