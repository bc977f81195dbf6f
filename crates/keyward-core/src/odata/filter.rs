//! A hand-written parser for the OData v4 `$filter` subset that Microsoft Graph accepts.
//!
//! The input is lexed into tokens, then parsed by recursive descent with the precedence
//! `not` > comparison > `and` > `or`. `Display` on [`Expr`] prints canonical OData with only
//! the parentheses that are needed, and the printed text parses back to an equal `Expr`.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// The longest `$filter` text, in bytes, that [`parse_filter`] accepts.
pub const MAX_INPUT_LEN: usize = 4096;
/// The deepest nesting of parentheses, `not` and lambdas that [`parse_filter`] accepts.
pub const MAX_DEPTH: usize = 32;
/// The most values that one `in (...)` list may hold.
pub const MAX_IN_VALUES: usize = 100;

/// A parsed `$filter` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Both operands hold.
    And(Box<Expr>, Box<Expr>),
    /// At least one operand holds.
    Or(Box<Expr>, Box<Expr>),
    /// The operand does not hold.
    Not(Box<Expr>),
    /// `prop op literal`; the property is always on the left (`literal op prop` is rejected).
    Compare {
        /// The property compared.
        path: Path,
        /// The comparison operator.
        op: CmpOp,
        /// The literal compared against.
        value: Literal,
    },
    /// `prop in ('a','b')`.
    In {
        /// The property tested.
        path: Path,
        /// The accepted values, at least one and at most [`MAX_IN_VALUES`].
        values: Vec<Literal>,
    },
    /// `startswith(prop,'x')` or `endswith(prop,'x')`; a trailing `eq true` is folded away.
    Func {
        /// The string function called.
        func: StrFunc,
        /// The property passed as the first argument.
        path: Path,
        /// The literal passed as the second argument.
        value: Literal,
    },
    /// `collection/any(v: body)`; paths in `body` start with a lambda variable in scope.
    Any {
        /// The collection property.
        collection: Path,
        /// The lambda variable's name.
        var: String,
        /// The condition tested for each member.
        body: Box<Expr>,
    },
    /// `collection/all(v: body)`; paths in `body` start with a lambda variable in scope.
    All {
        /// The collection property.
        collection: Path,
        /// The lambda variable's name.
        var: String,
        /// The condition tested for each member.
        body: Box<Expr>,
    },
}

/// A slash-separated member path, e.g. `initiatedBy/user/id` is `["initiatedBy","user","id"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<String>);

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
    /// `lt`
    Lt,
    /// `le`
    Le,
}

/// A string function usable as a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrFunc {
    /// `startswith(prop,'x')`
    StartsWith,
    /// `endswith(prop,'x')`
    EndsWith,
}

/// A literal value on the right of a comparison or inside an `in` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// A single-quoted string with `''` unescaped, so `'it''s'` is `it's`.
    String(String),
    /// A decimal integer that fits in an `i64`.
    Int(i64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A bare GUID (8-4-4-4-12 hex digits), lowercased.
    Guid(String),
    /// A bare RFC 3339 date-time, or a bare date taken as midnight UTC.
    DateTime(OffsetDateTime),
}

/// Why a `$filter` was rejected, with the byte offset in the input where the problem was seen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FilterError {
    /// A short explanation for humans that names what was expected and where.
    pub message: String,
    /// The byte offset in the input, always on a character boundary.
    pub position: usize,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
        })
    }
}

impl fmt::Display for StrFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StrFunc::StartsWith => "startswith",
            StrFunc::EndsWith => "endswith",
        })
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::Int(n) => write!(f, "{n}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
            Literal::Guid(g) => f.write_str(g),
            // Every value the parser produces formats as RFC 3339; the fallback only serves
            // hand-built values outside RFC 3339's range (years beyond 0000-9999).
            Literal::DateTime(dt) => match dt.format(&Rfc3339) {
                Ok(s) => f.write_str(&s),
                Err(_) => write!(f, "{dt}"),
            },
        }
    }
}

/// Binding strength used by the printer: `or` < `and` < everything else.
fn precedence(e: &Expr) -> u8 {
    match e {
        Expr::Or(..) => 1,
        Expr::And(..) => 2,
        _ => 3,
    }
}

/// Prints an operand of a left-associative binary operator, parenthesised only when needed.
fn write_operand(f: &mut fmt::Formatter<'_>, e: &Expr, parent: u8, right: bool) -> fmt::Result {
    let p = precedence(e);
    if p < parent || (right && p == parent) { write!(f, "({e})") } else { write!(f, "{e}") }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(l, r) | Expr::And(l, r) => {
                let (p, kw) = if precedence(self) == 1 { (1, " or ") } else { (2, " and ") };
                write_operand(f, l, p, false)?;
                f.write_str(kw)?;
                write_operand(f, r, p, true)
            }
            Expr::Not(e) => write!(f, "not({e})"),
            Expr::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Expr::In { path, values } => {
                write!(f, "{path} in (")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
            Expr::Func { func, path, value } => write!(f, "{func}({path},{value})"),
            Expr::Any { collection, var, body } => write!(f, "{collection}/any({var}:{body})"),
            Expr::All { collection, var, body } => write!(f, "{collection}/all({var}:{body})"),
        }
    }
}

/// Builds an error whose message names the position and, for short inputs, the input itself.
fn error(input: &str, position: usize, what: &str) -> FilterError {
    let context = if input.chars().count() <= 80 { format!(" in '{input}'") } else { String::new() };
    FilterError { message: format!("Syntax error: {what} at position {position}{context}"), position }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Slash,
    Colon,
    Ident(String),
    Lit(Literal),
    End,
}

static END: Tok = Tok::End;

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Slash => "'/'".into(),
            Tok::Colon => "':'".into(),
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Lit(_) => "a literal".into(),
            Tok::End => "end of input".into(),
        }
    }
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    pos: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Characters that may appear in a bare literal: numbers, GUIDs and date-times.
fn is_bare_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | ':' | '.')
}

/// Parses a bare `YYYY-MM-DD` date as midnight UTC. Returns `None` when the text does not have
/// that shape, and `Some(None)` when it has the shape but names no real date.
fn parse_date(s: &str) -> Option<Option<OffsetDateTime>> {
    let shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 => c == b'-',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let field = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<i32>().ok());
    let month = field(5..7).and_then(|m| Month::try_from(u8::try_from(m).ok()?).ok());
    let day = field(8..10).and_then(|d| u8::try_from(d).ok());
    let date = match (field(0..4), month, day) {
        (Some(y), Some(m), Some(d)) => Date::from_calendar_date(y, m, d).ok(),
        _ => None,
    };
    Some(date.map(|d| d.midnight().assume_utc()))
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.input.get(self.pos..)?.chars().next()
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek().filter(|c| f(*c)) {
            self.pos += c.len_utf8();
        }
        self.input.get(start..self.pos).unwrap_or_default()
    }

    fn err(&self, pos: usize, what: &str) -> FilterError {
        error(self.input, pos, what)
    }

    fn tokenize(mut self) -> Result<Vec<Token>, FilterError> {
        let mut toks = Vec::new();
        while let Some(c) = self.peek() {
            let pos = self.pos;
            let punct = match c {
                ' ' | '\t' => {
                    self.pos += 1;
                    continue;
                }
                '(' => Some(Tok::LParen),
                ')' => Some(Tok::RParen),
                ',' => Some(Tok::Comma),
                '/' => Some(Tok::Slash),
                ':' => Some(Tok::Colon),
                _ => None,
            };
            let tok = if let Some(t) = punct {
                self.pos += 1;
                t
            } else if c == '\'' {
                self.string(pos)?
            } else if c == '$' {
                self.pos += 1;
                let name = self.take_while(is_ident_char);
                return Err(self.err(pos, &format!("'${name}' is not supported")));
            } else if let Some(guid) = self.guid() {
                Tok::Lit(Literal::Guid(guid))
            } else if is_ident_start(c) {
                Tok::Ident(self.take_while(is_ident_char).to_owned())
            } else if c.is_ascii_digit() || c == '-' {
                self.bare(pos)?
            } else {
                return Err(self.err(pos, &format!("unexpected character '{c}'")));
            };
            toks.push(Token { tok, pos });
        }
        toks.push(Token { tok: Tok::End, pos: self.input.len() });
        Ok(toks)
    }

    fn string(&mut self, start: usize) -> Result<Tok, FilterError> {
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err(start, "unterminated string literal")),
                Some('\'') => {
                    self.pos += 1;
                    if self.peek() != Some('\'') {
                        return Ok(Tok::Lit(Literal::String(s)));
                    }
                    self.pos += 1;
                    s.push('\'');
                }
                Some(c) => {
                    self.pos += c.len_utf8();
                    s.push(c);
                }
            }
        }
    }

    /// Lexes a GUID at the cursor, which may start with a letter or a digit.
    fn guid(&mut self) -> Option<String> {
        let end = self.pos.checked_add(36)?;
        let text = self.input.get(self.pos..end).filter(|t| crate::ids::is_guid(t))?;
        let next = self.input.get(end..).and_then(|r| r.chars().next());
        if next.is_some_and(|c| is_bare_char(c) || is_ident_char(c)) {
            return None;
        }
        self.pos = end;
        Some(text.to_ascii_lowercase())
    }

    /// Lexes a bare integer, date or date-time starting with a digit or `-`.
    fn bare(&mut self, start: usize) -> Result<Tok, FilterError> {
        let text = self.take_while(is_bare_char);
        let digits = text.strip_prefix('-').unwrap_or(text);
        let lit = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().map(Literal::Int).map_err(|_| "does not fit in a 64-bit integer")
        } else if let Some(date) = parse_date(text) {
            date.filter(in_range).map(Literal::DateTime).ok_or("is not a valid date from year 1 to 9000")
        } else {
            let dt = OffsetDateTime::parse(text, &Rfc3339).ok().filter(in_range);
            dt.map(Literal::DateTime).ok_or("is not a valid literal (a date-time from year 1 to 9000)")
        };
        lit.map(Tok::Lit).map_err(|why| self.err(start, &format!("'{text}' {why}")))
    }
}

/// Dates a filter may name: far enough from the ends of what times can hold that a bound one
/// microsecond further, or the same instant in UTC, still exists.
fn in_range(at: &OffsetDateTime) -> bool {
    (1..=9000).contains(&at.year())
}

struct Parser<'a> {
    input: &'a str,
    toks: Vec<Token>,
    idx: usize,
    depth: usize,
    /// Lambda variables in scope, innermost last.
    scopes: Vec<String>,
}

fn is_kw(tok: &Tok, kw: &str) -> bool {
    matches!(tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

impl Parser<'_> {
    fn peek_at(&self, n: usize) -> &Tok {
        self.toks.get(self.idx + n).map_or(&END, |t| &t.tok)
    }

    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.idx).map_or(self.input.len(), |t| t.pos)
    }

    fn advance(&mut self) {
        self.idx = (self.idx + 1).min(self.toks.len());
    }

    fn at_kw(&self, kw: &str) -> bool {
        is_kw(self.peek(), kw)
    }

    fn fail<T>(&self, expected: &str) -> Result<T, FilterError> {
        let what = format!("expected {expected} but found {}", self.peek().describe());
        Err(error(self.input, self.pos(), &what))
    }

    fn expect(&mut self, tok: &Tok, expected: &str) -> Result<(), FilterError> {
        if self.peek() == tok {
            self.advance();
            Ok(())
        } else {
            self.fail(expected)
        }
    }

    fn ident(&mut self, expected: &str) -> Result<String, FilterError> {
        match self.peek() {
            Tok::Ident(s) => {
                let s = s.clone();
                self.advance();
                Ok(s)
            }
            _ => self.fail(expected),
        }
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let what = format!("expression nested more than {MAX_DEPTH} levels deep");
            return Err(error(self.input, self.pos(), &what));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.parse_and()?;
        while self.at_kw("or") {
            self.advance();
            left = Expr::Or(Box::new(left), Box::new(self.parse_and()?));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.parse_unary()?;
        while self.at_kw("and") {
            self.advance();
            left = Expr::And(Box::new(left), Box::new(self.parse_unary()?));
        }
        Ok(left)
    }

    /// Parses `not x` or a primary. A group right after `not` costs no extra depth, so that the
    /// printed form `not(x)` is never deeper than the input it came from.
    fn parse_unary(&mut self) -> Result<Expr, FilterError> {
        if !self.at_kw("not") {
            return self.parse_primary();
        }
        self.advance();
        self.enter()?;
        let inner = if self.peek() == &Tok::LParen { self.parse_group()? } else { self.parse_unary()? };
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    fn parse_group(&mut self) -> Result<Expr, FilterError> {
        self.expect(&Tok::LParen, "'('")?;
        let e = self.parse_or()?;
        self.expect(&Tok::RParen, "')'")?;
        Ok(e)
    }

    fn parse_primary(&mut self) -> Result<Expr, FilterError> {
        match self.peek() {
            Tok::LParen => {
                self.enter()?;
                let e = self.parse_group()?;
                self.depth -= 1;
                Ok(e)
            }
            Tok::Ident(name) => {
                let func = if name.eq_ignore_ascii_case("startswith") {
                    Some(StrFunc::StartsWith)
                } else if name.eq_ignore_ascii_case("endswith") {
                    Some(StrFunc::EndsWith)
                } else {
                    None
                };
                match func {
                    Some(func) if self.peek_at(1) == &Tok::LParen => self.parse_func(func),
                    _ if ["true", "false", "null"].iter().any(|k| name.eq_ignore_ascii_case(k)) => {
                        self.fail("a property path (the property must be on the left)")
                    }
                    _ => self.parse_path_expr(),
                }
            }
            Tok::Lit(_) => self.fail("a property path (the property must be on the left)"),
            _ => self.fail("an expression"),
        }
    }

    fn parse_func(&mut self, func: StrFunc) -> Result<Expr, FilterError> {
        self.advance();
        self.expect(&Tok::LParen, "'('")?;
        let path = self.parse_path()?;
        self.expect(&Tok::Comma, "','")?;
        let value = self.parse_literal()?;
        self.expect(&Tok::RParen, "')'")?;
        if self.at_kw("eq") {
            self.advance();
            if !self.at_kw("true") {
                return self.fail("'true' after a function call and 'eq'");
            }
            self.advance();
        }
        Ok(Expr::Func { func, path, value })
    }

    /// True when the cursor is at `/any(` or `/all(`.
    fn lambda_ahead(&self) -> bool {
        self.peek() == &Tok::Slash
            && (is_kw(self.peek_at(1), "any") || is_kw(self.peek_at(1), "all"))
            && self.peek_at(2) == &Tok::LParen
    }

    /// Parses a member path, stopping before a `/any(` or `/all(`.
    fn parse_path(&mut self) -> Result<Path, FilterError> {
        let start = self.pos();
        let mut segs = vec![self.ident("a property path")?];
        while self.peek() == &Tok::Slash && !self.lambda_ahead() {
            self.advance();
            segs.push(self.ident("a property name after '/'")?);
        }
        if let Some(var) = self.scopes.last()
            && !self.scopes.contains(&segs[0])
        {
            let what = format!("path '{}' must start with the lambda variable '{var}'", segs.join("/"));
            return Err(error(self.input, start, &what));
        }
        Ok(Path(segs))
    }

    fn parse_path_expr(&mut self) -> Result<Expr, FilterError> {
        let path = self.parse_path()?;
        if self.lambda_ahead() {
            return self.parse_lambda(path);
        }
        let op = match self.peek() {
            Tok::Ident(s) => match s.to_ascii_lowercase().as_str() {
                "eq" => Some(CmpOp::Eq),
                "ne" => Some(CmpOp::Ne),
                "gt" => Some(CmpOp::Gt),
                "ge" => Some(CmpOp::Ge),
                "lt" => Some(CmpOp::Lt),
                "le" => Some(CmpOp::Le),
                _ => None,
            },
            _ => None,
        };
        if let Some(op) = op {
            self.advance();
            let value = self.parse_literal()?;
            return Ok(Expr::Compare { path, op, value });
        }
        if !self.at_kw("in") {
            return self.fail("a comparison operator (eq, ne, gt, ge, lt, le) or 'in'");
        }
        self.advance();
        self.expect(&Tok::LParen, "'(' after 'in'")?;
        let mut values = vec![self.parse_literal()?];
        while self.peek() == &Tok::Comma {
            self.advance();
            if values.len() == MAX_IN_VALUES {
                let what = format!("an 'in' list may hold at most {MAX_IN_VALUES} values");
                return Err(error(self.input, self.pos(), &what));
            }
            values.push(self.parse_literal()?);
        }
        self.expect(&Tok::RParen, "',' or ')'")?;
        Ok(Expr::In { path, values })
    }

    fn parse_lambda(&mut self, collection: Path) -> Result<Expr, FilterError> {
        self.advance();
        let is_any = is_kw(self.peek(), "any");
        self.advance();
        self.advance();
        if self.peek() == &Tok::RParen {
            let kind = if is_any { "any" } else { "all" };
            return Err(error(
                self.input,
                self.pos(),
                &format!("'{kind}()' without a lambda variable is not supported"),
            ));
        }
        self.enter()?;
        let var = self.ident("a lambda variable name")?;
        self.expect(&Tok::Colon, "':' after the lambda variable")?;
        self.scopes.push(var.clone());
        let body = Box::new(self.parse_or()?);
        self.scopes.pop();
        self.expect(&Tok::RParen, "')' closing the lambda")?;
        self.depth -= 1;
        Ok(if is_any { Expr::Any { collection, var, body } } else { Expr::All { collection, var, body } })
    }

    fn parse_literal(&mut self) -> Result<Literal, FilterError> {
        let lit = match self.peek() {
            Tok::Lit(l) => l.clone(),
            t if is_kw(t, "true") => Literal::Bool(true),
            t if is_kw(t, "false") => Literal::Bool(false),
            t if is_kw(t, "null") => Literal::Null,
            _ => return self.fail("a literal value"),
        };
        self.advance();
        Ok(lit)
    }
}

/// Parses the text of a `$filter` query option, already URL-decoded, into an [`Expr`].
///
/// # Errors
///
/// Returns a [`FilterError`] when the text is empty, longer than [`MAX_INPUT_LEN`] bytes,
/// nested deeper than [`MAX_DEPTH`], or not in the supported grammar. It never panics.
pub fn parse_filter(input: &str) -> Result<Expr, FilterError> {
    if input.len() > MAX_INPUT_LEN {
        let pos = (0..=MAX_INPUT_LEN).rev().find(|&i| input.is_char_boundary(i)).unwrap_or(0);
        return Err(error(input, pos, &format!("filter is longer than {MAX_INPUT_LEN} bytes")));
    }
    let toks = Lexer { input, pos: 0 }.tokenize()?;
    let mut p = Parser { input, toks, idx: 0, depth: 0, scopes: Vec::new() };
    if p.peek() == &Tok::End {
        return Err(error(input, p.pos(), "empty filter"));
    }
    let e = p.parse_or()?;
    if p.peek() != &Tok::End {
        return p.fail("'and', 'or' or end of input");
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Expr {
        parse_filter(s).unwrap_or_else(|e| panic!("{s:?} failed: {e}"))
    }

    fn path(s: &str) -> Path {
        Path(s.split('/').map(str::to_owned).collect())
    }

    fn cmp(pth: &str, op: CmpOp, value: Literal) -> Expr {
        Expr::Compare { path: path(pth), op, value }
    }

    fn func(func: StrFunc, pth: &str, value: &str) -> Expr {
        Expr::Func { func, path: path(pth), value: s(value) }
    }

    fn s(v: &str) -> Literal {
        Literal::String(v.to_owned())
    }

    fn dt(v: &str) -> Literal {
        Literal::DateTime(OffsetDateTime::parse(v, &Rfc3339).expect("valid test date"))
    }

    fn b(e: Expr) -> Box<Expr> {
        Box::new(e)
    }

    fn err(input: &str) -> FilterError {
        parse_filter(input).expect_err(input)
    }

    /// Asserts that `input` parses to `expected` and that the printed form is `printed`.
    fn check(input: &str, expected: &Expr, printed: &str) {
        assert_eq!(&p(input), expected, "{input}");
        assert_eq!(expected.to_string(), printed);
        assert_eq!(&p(printed), expected, "{printed}");
    }

    #[test]
    fn graph_examples() {
        let starts = func(StrFunc::StartsWith, "displayName", "a");
        check("startswith(displayName,'a')", &starts, "startswith(displayName,'a')");
        check("startsWith(displayName, 'a') eq true", &starts, "startswith(displayName,'a')");
        check("STARTSWITH(displayName,'a') EQ True", &starts, "startswith(displayName,'a')");
        let upn = cmp("userPrincipalName", CmpOp::Eq, s("x@contoso.com"));
        check("userPrincipalName eq 'x@contoso.com'", &upn, "userPrincipalName eq 'x@contoso.com'");
        let enabled = cmp("accountEnabled", CmpOp::Eq, Literal::Bool(false));
        check("accountEnabled eq false", &enabled, "accountEnabled eq false");
        let ids = Expr::In { path: path("id"), values: vec![s("a"), s("b")] };
        check("id in ('a','b')", &ids, "id in ('a','b')");
        check("id IN( 'a' , 'b' )", &ids, "id in ('a','b')");
        let body = b(func(StrFunc::StartsWith, "x", "ad"));
        let mails = Expr::Any { collection: path("otherMails"), var: "x".into(), body };
        check("otherMails/any(x:startswith(x,'ad'))", &mails, "otherMails/any(x:startswith(x,'ad'))");
        let guid = "8e4b1e0d-3b8c-4d6e-9a1a-123456789abc";
        let body = b(cmp("t/id", CmpOp::Eq, s(guid)));
        let targets = Expr::Any { collection: path("targetResources"), var: "t".into(), body };
        let input = format!("targetResources/any(t: t/id eq '{guid}')");
        check(&input, &targets, &input.replace(": ", ":"));
        let range = "activityDateTime ge 2024-01-01T00:00:00Z and activityDateTime le 2024-02-01T00:00:00Z";
        let expected = Expr::And(
            b(cmp("activityDateTime", CmpOp::Ge, dt("2024-01-01T00:00:00Z"))),
            b(cmp("activityDateTime", CmpOp::Le, dt("2024-02-01T00:00:00Z"))),
        );
        check(range, &expected, range);
        let not_ends = Expr::Not(b(func(StrFunc::EndsWith, "mail", "@contoso.com")));
        check("not(endswith(mail,'@contoso.com'))", &not_ends, "not(endswith(mail,'@contoso.com'))");
        check("not endsWith(mail,'@contoso.com')", &not_ends, "not(endswith(mail,'@contoso.com'))");
        let obrien = cmp("displayName", CmpOp::Eq, s("O'Brien"));
        check("displayName eq 'O''Brien'", &obrien, "displayName eq 'O''Brien'");
    }

    #[test]
    fn precedence_and_grouping() {
        let x = cmp("a", CmpOp::Eq, s("x"));
        let y = cmp("b", CmpOp::Eq, s("y"));
        let z = cmp("c", CmpOp::Eq, s("z"));
        let and_binds_tighter = Expr::Or(b(x.clone()), b(Expr::And(b(y.clone()), b(z.clone()))));
        let text = "a eq 'x' or b eq 'y' and c eq 'z'";
        check(text, &and_binds_tighter, text);
        let grouped = Expr::And(b(Expr::Or(b(x.clone()), b(y.clone()))), b(z.clone()));
        check("((a eq 'x' OR b eq 'y')) AND c eq 'z'", &grouped, "(a eq 'x' or b eq 'y') and c eq 'z'");
        let not_first = Expr::And(b(Expr::Not(b(x.clone()))), b(y.clone()));
        check("not a eq 'x' and b eq 'y'", &not_first, "not(a eq 'x') and b eq 'y'");
        check("NOT (a eq 'x') and b eq 'y'", &not_first, "not(a eq 'x') and b eq 'y'");
        let right = Expr::And(b(x), b(Expr::And(b(y), b(z))));
        let text = "a eq 'x' and (b eq 'y' and c eq 'z')";
        check(text, &right, text);
    }

    #[test]
    fn literals() {
        let guid = |g: &str| Literal::Guid(g.into());
        let cases = [
            ("n eq -42", cmp("n", CmpOp::Eq, Literal::Int(-42)), "n eq -42"),
            ("n ne 9223372036854775807", cmp("n", CmpOp::Ne, Literal::Int(i64::MAX)), "n ne 9223372036854775807"),
            ("n lt -9223372036854775808", cmp("n", CmpOp::Lt, Literal::Int(i64::MIN)), "n lt -9223372036854775808"),
            ("n gt -007", cmp("n", CmpOp::Gt, Literal::Int(-7)), "n gt -7"),
            ("n Le TRUE", cmp("n", CmpOp::Le, Literal::Bool(true)), "n le true"),
            ("n GE Null", cmp("n", CmpOp::Ge, Literal::Null), "n ge null"),
            (
                "id eq 8E4B1E0D-3b8c-4d6e-9a1a-123456789ABC",
                cmp("id", CmpOp::Eq, guid("8e4b1e0d-3b8c-4d6e-9a1a-123456789abc")),
                "id eq 8e4b1e0d-3b8c-4d6e-9a1a-123456789abc",
            ),
            (
                "id in (abcdef01-3b8c-4d6e-9a1a-123456789abc)",
                Expr::In { path: path("id"), values: vec![guid("abcdef01-3b8c-4d6e-9a1a-123456789abc")] },
                "id in (abcdef01-3b8c-4d6e-9a1a-123456789abc)",
            ),
            (
                "d ge 2024-01-02T03:04:05.123Z",
                cmp("d", CmpOp::Ge, dt("2024-01-02T03:04:05.123Z")),
                "d ge 2024-01-02T03:04:05.123Z",
            ),
            (
                "d ge 2024-01-02T03:04:05+01:00",
                cmp("d", CmpOp::Ge, dt("2024-01-02T03:04:05+01:00")),
                "d ge 2024-01-02T03:04:05+01:00",
            ),
            ("d ge 2024-01-02", cmp("d", CmpOp::Ge, dt("2024-01-02T00:00:00Z")), "d ge 2024-01-02T00:00:00Z"),
            ("s eq 'héllo 😀 ''q'''", cmp("s", CmpOp::Eq, s("héllo 😀 'q'")), "s eq 'héllo 😀 ''q'''"),
            ("s eq ''", cmp("s", CmpOp::Eq, s("")), "s eq ''"),
            ("\ta/b/c\teq 1 ", cmp("a/b/c", CmpOp::Eq, Literal::Int(1)), "a/b/c eq 1"),
        ];
        for (input, expected, printed) in &cases {
            check(input, expected, printed);
        }
    }

    #[test]
    fn lambdas() {
        let inner = Expr::And(b(cmp("g/id", CmpOp::Eq, s("x"))), b(cmp("m/on", CmpOp::Eq, Literal::Bool(true))));
        let all = Expr::All { collection: path("m/groups"), var: "g".into(), body: b(inner) };
        let nested = Expr::Any { collection: path("members"), var: "m".into(), body: b(all) };
        let text = "members/any(m: m/groups/ALL(g: g/id eq 'x' and m/on eq true))";
        check(text, &nested, "members/any(m:m/groups/all(g:g/id eq 'x' and m/on eq true))");
        // A property that is merely named `any` is still a path segment.
        check("a/any eq 1", &cmp("a/any", CmpOp::Eq, Literal::Int(1)), "a/any eq 1");
    }

    #[test]
    fn errors() {
        let e = err("startswith(displayName,'a'");
        let expected =
            "Syntax error: expected ')' but found end of input at position 26 in 'startswith(displayName,'a''";
        assert_eq!((e.message.as_str(), e.position), (expected, 26));
        let long = format!("a eq '{}'", "é".repeat(MAX_INPUT_LEN));
        let too_deep = |n: usize| format!("{}a eq 1{}", "(".repeat(n), ")".repeat(n));
        let nots = |n: usize| format!("{}a eq 1", "not ".repeat(n));
        let too_many = |n: usize| format!("id in ({})", vec!["1"; n].join(","));
        let cases = [
            ("a eq 'abc", "unterminated string literal at position 5"),
            ("(a eq 'x'", "expected ')'"),
            ("a eq 'x' b", "expected 'and', 'or' or end of input but found 'b' at position 9"),
            ("a eq 'x')", "but found ')'"),
            ("", "empty filter at position 0"),
            (" \t", "empty filter at position 2"),
            (
                "eq 'x'",
                "expected a comparison operator (eq, ne, gt, ge, lt, le) or 'in' but found a literal at position 3",
            ),
            ("'x' eq a", "property must be on the left"),
            ("true eq a", "property must be on the left"),
            ("a eq b", "expected a literal value but found 'b'"),
            ("a eq", "expected a literal value but found end of input"),
            ("a", "expected a comparison operator"),
            ("n eq 9223372036854775808", "does not fit in a 64-bit integer"),
            ("n eq -99999999999999999999", "does not fit in a 64-bit integer"),
            ("members/$count eq 0", "'$count' is not supported at position 8"),
            ("é(é", "unexpected character 'é' at position 0"),
            ("a eq 'x' é", "unexpected character 'é' at position 9"),
            ("a\neq 1", "unexpected character '\n'"),
            ("a eq 1.5", "'1.5' is not a valid literal"),
            ("d eq 2024-13-01", "'2024-13-01' is not a valid date"),
            ("id in ()", "expected a literal value but found ')'"),
            ("startswith(a,'b') eq false", "expected 'true' after a function call"),
            ("startswith(a/any(x:x eq 1),'b')", "expected ','"),
            ("tags/any(x: y eq 'a')", "path 'y' must start with the lambda variable 'x' at position 12"),
            ("tags/any()", "'any()' without a lambda variable is not supported"),
            ("tags/any(x y eq 1)", "expected ':' after the lambda variable"),
            ("tags/any('x': x eq 1)", "expected a lambda variable name"),
            (&too_deep(MAX_DEPTH + 1), "nested more than 32 levels deep"),
            (&nots(MAX_DEPTH + 1), "nested more than 32 levels deep"),
            (&too_many(MAX_IN_VALUES + 1), "at most 100 values"),
            (&long, "filter is longer than 4096 bytes"),
        ];
        for (input, needle) in cases {
            let e = err(input);
            assert!(e.message.contains(needle), "{input:?}: {e}");
            assert!(input.is_char_boundary(e.position), "{input:?}: {e}");
        }
        // Just inside the limits is fine.
        assert!(parse_filter(&too_deep(MAX_DEPTH)).is_ok());
        assert!(parse_filter(&nots(MAX_DEPTH)).is_ok());
        assert!(parse_filter(&too_many(MAX_IN_VALUES)).is_ok());
        // Long flat chains are not nesting, and they print without extra parentheses.
        let chain = vec!["a eq 1"; 200].join(" and ");
        assert_eq!(p(&chain).to_string(), chain);
    }

    fn ident() -> impl Strategy<Value = String> {
        const KEYWORDS: &str = "and or not eq ne gt ge lt le in any all true false null startswith endswith";
        "[A-Za-z_][A-Za-z0-9_]{0,6}"
            .prop_map(|s| if KEYWORDS.split(' ').any(|k| s.eq_ignore_ascii_case(k)) { format!("{s}_") } else { s })
    }

    fn path_strategy() -> impl Strategy<Value = Path> {
        prop::collection::vec(ident(), 1..4).prop_map(Path)
    }

    fn literal() -> impl Strategy<Value = Literal> {
        // Years 1 to 9000: a filter names no other (see `in_range`).
        let instant = (-62_135_596_800_i64..221_876_928_000, prop_oneof![Just(0_u32), 0..1_000_000_000_u32]);
        prop_oneof![
            "[a-z' é😀\t]{0,8}".prop_map(Literal::String),
            "\\PC{0,6}".prop_map(Literal::String),
            any::<i64>().prop_map(Literal::Int),
            any::<bool>().prop_map(Literal::Bool),
            Just(Literal::Null),
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(Literal::Guid),
            instant.prop_map(|(secs, nanos)| {
                let t = OffsetDateTime::from_unix_timestamp(secs).expect("in range");
                Literal::DateTime(t.replace_nanosecond(nanos).expect("in range"))
            }),
        ]
    }

    /// Makes every path inside a lambda body start with the innermost lambda variable.
    fn fix_scopes(e: &mut Expr, var: Option<&str>) {
        let fix = |p: &mut Path| {
            if let (Some(v), Some(first)) = (var, p.0.first_mut()) {
                *first = v.to_owned();
            }
        };
        match e {
            Expr::And(l, r) | Expr::Or(l, r) => {
                fix_scopes(l, var);
                fix_scopes(r, var);
            }
            Expr::Not(x) => fix_scopes(x, var),
            Expr::Compare { path, .. } | Expr::In { path, .. } | Expr::Func { path, .. } => fix(path),
            Expr::Any { collection, var: v, body } | Expr::All { collection, var: v, body } => {
                fix(collection);
                fix_scopes(body, Some(v));
            }
        }
    }

    fn expr_strategy() -> impl Strategy<Value = Expr> {
        use CmpOp::*;
        let op = prop::sample::select(vec![Eq, Ne, Gt, Ge, Lt, Le]);
        let func = prop::sample::select(vec![StrFunc::StartsWith, StrFunc::EndsWith]);
        let values = prop::collection::vec(literal(), 1..4);
        let leaf = prop_oneof![
            (path_strategy(), op, literal()).prop_map(|(path, op, value)| Expr::Compare { path, op, value }),
            (path_strategy(), values).prop_map(|(path, values)| Expr::In { path, values }),
            (func, path_strategy(), literal()).prop_map(|(func, path, value)| Expr::Func { func, path, value }),
        ];
        let tree = leaf.prop_recursive(5, 32, 2, |inner| {
            let lambda = (path_strategy(), ident(), inner.clone(), any::<bool>());
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::And(b(l), b(r))),
                (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::Or(b(l), b(r))),
                inner.prop_map(|e| Expr::Not(b(e))),
                lambda.prop_map(|(collection, var, body, any)| if any {
                    Expr::Any { collection, var, body: b(body) }
                } else {
                    Expr::All { collection, var, body: b(body) }
                }),
            ]
        });
        tree.prop_map(|mut e| {
            fix_scopes(&mut e, None);
            e
        })
    }

    /// Text shaped like a filter, with random spacing and casing, sometimes with a stray piece
    /// spliced in, so that both parses and near-miss errors are common.
    fn filterish() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "[a-cx](/[a-c])? (eq|NE|gt|le) ('[a-zé' ]{0,3}'|-?[0-9]{1,19}|true|null|8e4b1e0d-3b8c-4d6e-9a1a-123456789abc)",
            "[a-cx] ge 2024-0[1-9]-0[1-9](T03:04:05(\\.5)?(Z|\\+01:00))?",
            "(startswith|EndsWith)\\( ?[a-cx], ?'[a-z]{0,2}'\\)( eq true)?",
            "[a-cx] in ?\\(('x'|1)(, ?('y'|2)){0,3}\\)",
        ];
        let text = leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), "( and | or | AND |\tOr\t)", inner.clone())
                    .prop_map(|(l, op, r)| format!("{l}{op}{r}")),
                ("(not ?|NOT ?)", inner.clone()).prop_map(|(n, e)| format!("{n}({e})")),
                inner.clone().prop_map(|e| format!("not {e}")),
                inner.clone().prop_map(|e| format!("( {e})")),
                ("[a-c]", "(any|ALL)", inner).prop_map(|(c, k, e)| format!("{c}/{k}(x: {e})")),
            ]
        });
        let junk = prop::sample::select(vec!["'", ",", "/", ":", "(", ")", "é", "😀", "$count", "-", "and"]);
        let splice = prop::option::weighted(0.3, (any::<prop::sample::Index>(), junk));
        (text, splice).prop_map(|(mut text, splice)| {
            if let Some((at, junk)) = splice {
                let at = at.index(text.len() + 1);
                if text.is_char_boundary(at) {
                    text.insert_str(at, junk);
                }
            }
            text
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(input in "\\PC*") {
            let _ = parse_filter(&input);
        }

        #[test]
        fn filterish_text_never_panics_and_round_trips(input in filterish()) {
            if let Ok(e) = parse_filter(&input) {
                prop_assert_eq!(parse_filter(&e.to_string()), Ok(e));
            }
        }

        #[test]
        fn printed_expressions_parse_back(e in expr_strategy()) {
            prop_assert_eq!(parse_filter(&e.to_string()), Ok(e));
        }
    }
}
