//! The rule language parser (nom 8). See the crate README for the grammar.
//!
//! Errors carry the line and column (1-based, in characters) and say what was expected.

use std::net::IpAddr;
use std::str::FromStr;

use nom::branch::alt;
use nom::bytes::complete::take_while1;
use nom::character::complete::{char, digit1, space0};
use nom::combinator::{opt, value};
use nom::error::{ErrorKind, ParseError as NomParseError};
use nom::{IResult, Parser};

use crate::rule::*;

/// A rule text could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: expected {expected}, found {found}")]
pub struct ParseError {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
    /// What the parser expected there.
    pub expected: String,
    /// What it found (the next word, or "end of line").
    pub found: String,
}

/// Longest table name.
pub const MAX_NAME: usize = 64;

#[derive(Debug, Clone, PartialEq)]
struct PErr<'a> {
    at: &'a str,
    expected: &'static str,
}

impl<'a> NomParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, _kind: ErrorKind) -> Self {
        PErr { at: input, expected: "" }
    }
    fn append(_input: &'a str, _kind: ErrorKind, other: Self) -> Self {
        other
    }
    fn or(self, other: Self) -> Self {
        // Keep the error that got further.
        if other.at.len() <= self.at.len() {
            other
        } else {
            self
        }
    }
}

type R<'a, T> = IResult<&'a str, T, PErr<'a>>;

fn fail<'a, T>(at: &'a str, expected: &'static str) -> R<'a, T> {
    Err(nom::Err::Error(PErr { at, expected }))
}

/// Runs `p` after optional blanks; if it fails without getting anywhere, the error says
/// `what` was expected at the token's start.
fn tok<'a, O>(
    what: &'static str,
    mut p: impl Parser<&'a str, Output = O, Error = PErr<'a>>,
) -> impl FnMut(&'a str) -> R<'a, O> {
    move |i: &'a str| {
        let (i, _) = space0::<&str, PErr<'a>>(i)?;
        match p.parse(i) {
            Err(nom::Err::Error(e)) if e.expected.is_empty() || e.at.len() >= i.len() => fail(i, what),
            r => r,
        }
    }
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A keyword: a whole word equal to `w`.
fn kw<'a>(w: &'static str) -> impl FnMut(&'a str) -> R<'a, ()> {
    move |i: &'a str| {
        let (rest, word) = take_while1(is_word)(i)?;
        if word == w {
            Ok((rest, ()))
        } else {
            fail(i, "")
        }
    }
}

/// Whether the next word (after blanks) is `w`, without consuming.
fn peek_kw(i: &str, w: &str) -> bool {
    let t = i.trim_start_matches([' ', '\t']);
    t.starts_with(w) && !t[w.len()..].starts_with(is_word)
}

fn number<'a, T: FromStr>(what: &'static str) -> impl FnMut(&'a str) -> R<'a, T> {
    tok(what, move |i: &'a str| {
        let (rest, d) = digit1(i)?;
        match d.parse::<T>() {
            Ok(v) => Ok((rest, v)),
            Err(_) => fail(i, what),
        }
    })
}

fn cidr(i: &str) -> R<'_, Cidr> {
    let what = "an IPv4 or IPv6 address, optionally with /prefix";
    let (i, _) = space0(i)?;
    let start = i;
    let (rest, text) = take_while1(|c: char| c.is_ascii_hexdigit() || c == ':' || c == '.')(i)
        .or_else(|_: nom::Err<PErr>| fail(i, what))?;
    let Ok(addr) = IpAddr::from_str(text) else { return fail(start, what) };
    let (rest, len) = opt((char('/'), digit1)).parse(rest)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some((_, d)) => match d.parse::<u8>() {
            Ok(l) if l <= max => l,
            _ => {
                let at = &start[text.len() + 1..];
                return fail(at, if max == 32 { "a prefix length 0-32" } else { "a prefix length 0-128" });
            }
        },
    };
    Ok((rest, Cidr { addr, len }))
}

/// Items of a `{ … }` list, separated by commas or blanks; `allow_empty` for tables.
fn list<'a, T>(i: &'a str, allow_empty: bool, mut item: impl FnMut(&'a str) -> R<'a, T>) -> R<'a, Vec<T>> {
    let (mut i, _) = tok("'{'", char('{'))(i)?;
    let mut out = Vec::new();
    loop {
        let (j, _) = space0(i)?;
        if let Ok((j, _)) = char::<&str, PErr>('}')(j) {
            if out.is_empty() && !allow_empty {
                return fail(i, "at least one list item");
            }
            return Ok((j, out));
        }
        if !out.is_empty() {
            if let Ok((k, _)) = char::<&str, PErr>(',')(j) {
                // A trailing comma is fine.
                let (k, _) = space0(k)?;
                if let Ok((k, _)) = char::<&str, PErr>('}')(k) {
                    return Ok((k, out));
                }
                i = k;
            }
        }
        let (j, v) = item(i)?;
        out.push(v);
        i = j;
    }
}

fn name(i: &str) -> R<'_, String> {
    let (i, _) = space0(i)?;
    let (rest, n) = take_while1(|c: char| is_word(c) || c == '.')(i)
        .or_else(|_: nom::Err<PErr>| fail(i, "a table name"))?;
    if n.len() > MAX_NAME {
        return fail(i, "a table name of at most 64 characters");
    }
    Ok((rest, n.to_string()))
}

fn table_ref(i: &str) -> R<'_, String> {
    let (i, _) = tok("'<'", char('<'))(i)?;
    let (i, n) = name(i)?;
    let (i, _) = tok("'>'", char('>'))(i)?;
    Ok((i, n))
}

fn addr_spec(i: &str) -> R<'_, AddrSpec> {
    let (j, _) = space0(i)?;
    if peek_kw(j, "any") {
        let (j, _) = kw("any")(j)?;
        return Ok((j, AddrSpec::Any));
    }
    if j.starts_with('<') {
        return table_ref(j).map(|(j, n)| (j, AddrSpec::Table(n)));
    }
    if j.starts_with('{') {
        return list(j, false, cidr).map(|(j, l)| (j, AddrSpec::List(l)));
    }
    match cidr(j) {
        Ok((j, c)) => Ok((j, AddrSpec::List(vec![c]))),
        Err(nom::Err::Error(e)) if e.at.len() < j.len() => Err(nom::Err::Error(e)),
        Err(_) => fail(j, "'any', an address, a network, a list '{ … }' or a table '<name>'"),
    }
}

fn port_range(i: &str) -> R<'_, PortRange> {
    let (i, lo) = number::<u16>("a port number 0-65535")(i)?;
    if let Ok((j, _)) = char::<&str, PErr>(':')(i) {
        let (j2, hi) = number::<u16>("a port number 0-65535")(j)?;
        if hi < lo {
            return fail(j, "a range end not below its start");
        }
        return Ok((j2, PortRange { lo, hi }));
    }
    Ok((i, PortRange { lo, hi: lo }))
}

fn ports(i: &str) -> R<'_, Vec<PortRange>> {
    let (j, _) = space0(i)?;
    if j.starts_with('{') {
        list(j, false, port_range)
    } else {
        port_range(j).map(|(j, p)| (j, vec![p]))
    }
}

fn endpoint<'a>(i: &'a str, proto: Option<Proto>) -> R<'a, Endpoint> {
    let (i, addr) = addr_spec(i)?;
    if peek_kw(i, "port") {
        if !proto.is_some_and(Proto::has_ports) {
            let (at, _) = space0(i)?;
            return fail(at, "'proto tcp' or 'proto udp' before a port");
        }
        let (i, _) = tok("'port'", kw("port"))(i)?;
        let (i, p) = ports(i)?;
        return Ok((i, Endpoint { addr, ports: p }));
    }
    Ok((i, Endpoint { addr, ports: Vec::new() }))
}

fn proto(i: &str) -> R<'_, Proto> {
    let (j, _) = space0(i)?;
    if j.starts_with(|c: char| c.is_ascii_digit()) {
        return number::<u8>("a protocol number 0-255")(j).map(|(j, n)| (j, Proto(n)));
    }
    tok(
        "a protocol: tcp, udp, icmp, icmp6 or a number",
        alt((
            value(Proto::TCP, kw("tcp")),
            value(Proto::UDP, kw("udp")),
            value(Proto::ICMP6, kw("icmp6")),
            value(Proto::ICMP, kw("icmp")),
        )),
    )(j)
}

fn rule_body(i: &str) -> R<'_, Rule> {
    let (i, action) = tok(
        "'pass', 'block', 'table' or 'set'",
        alt((value(Action::Pass, kw("pass")), value(Action::Block, kw("block")))),
    )(i)?;
    let (i, direction) =
        tok("'in' or 'out'", alt((value(Direction::In, kw("in")), value(Direction::Out, kw("out")))))(i)?;
    let mut r = Rule::new(action, direction);
    let mut i = i;
    if peek_kw(i, "quick") {
        i = kw("quick")(space0(i)?.0)?.0;
        r.quick = true;
    }
    if peek_kw(i, "inet") {
        i = kw("inet")(space0(i)?.0)?.0;
        r.family = Some(Family::Inet);
    } else if peek_kw(i, "inet6") {
        i = kw("inet6")(space0(i)?.0)?.0;
        r.family = Some(Family::Inet6);
    }
    if peek_kw(i, "proto") {
        let (j, _) = kw("proto")(space0(i)?.0)?;
        let (j, p) = proto(j)?;
        r.proto = Some(p);
        i = j;
    }
    if peek_kw(i, "all") {
        i = kw("all")(space0(i)?.0)?.0;
    } else {
        if peek_kw(i, "from") {
            let (j, _) = kw("from")(space0(i)?.0)?;
            let (j, e) = endpoint(j, r.proto)?;
            r.from = e;
            i = j;
        }
        if peek_kw(i, "to") {
            let (j, _) = kw("to")(space0(i)?.0)?;
            let (j, e) = endpoint(j, r.proto)?;
            r.to = e;
            i = j;
        }
    }
    let icmp_kw = if peek_kw(i, "icmp-type") {
        Some(("icmp-type", Proto::ICMP))
    } else if peek_kw(i, "icmp6-type") {
        Some(("icmp6-type", Proto::ICMP6))
    } else {
        None
    };
    if let Some((word, needed)) = icmp_kw {
        let (at, _) = space0(i)?;
        if r.proto != Some(needed) {
            return fail(
                at,
                if needed == Proto::ICMP {
                    "'proto icmp' before icmp-type"
                } else {
                    "'proto icmp6' before icmp6-type"
                },
            );
        }
        let (j, _) = kw(word)(at)?;
        let (j, ty) = number::<u8>("an ICMP type 0-255")(j)?;
        let mut m = IcmpMatch { ty, code: None };
        let mut j = j;
        if peek_kw(j, "code") {
            let (k, _) = kw("code")(space0(j)?.0)?;
            let (k, c) = number::<u8>("an ICMP code 0-255")(k)?;
            m.code = Some(c);
            j = k;
        }
        r.icmp = Some(m);
        i = j;
    }
    if peek_kw(i, "keep") || peek_kw(i, "no") {
        let (at, _) = space0(i)?;
        if action == Action::Block {
            return fail(at, "end of line ('keep state' / 'no state' only apply to pass rules)");
        }
        let (j, keep) = alt((value(true, kw("keep")), value(false, kw("no")))).parse(at)?;
        let (j, _) = tok("'state'", kw("state"))(j)?;
        r.keep_state = keep;
        i = j;
    }
    Ok((i, r))
}

fn end_of_line<'a>(i: &'a str, expected: &'static str) -> Result<(), nom::Err<PErr<'a>>> {
    let (i, _) = space0::<&str, PErr>(i)?;
    if i.is_empty() {
        Ok(())
    } else {
        fail::<()>(i, expected).map(|_| ())
    }
}

const RULE_TAIL: &str =
    "'quick', 'inet', 'inet6', 'proto', 'all', 'from', 'to', 'icmp-type', 'keep state', 'no state' or end of line";

enum Stmt {
    Rule(Rule),
    Table(Table),
    Default(Direction, Action),
}

fn statement(i: &str) -> R<'_, Stmt> {
    if peek_kw(i, "table") {
        let (i, _) = kw("table")(space0(i)?.0)?;
        let (i, n) = table_ref(i)?;
        let (i, entries) = list(i, true, cidr)?;
        end_of_line(i, "end of line")?;
        return Ok(("", Stmt::Table(Table { name: n, entries })));
    }
    if peek_kw(i, "set") {
        let (i, _) = kw("set")(space0(i)?.0)?;
        let (i, _) = tok("'default'", kw("default"))(i)?;
        let (i, d) =
            tok("'in' or 'out'", alt((value(Direction::In, kw("in")), value(Direction::Out, kw("out")))))(i)?;
        let (i, a) = tok(
            "'pass' or 'block'",
            alt((value(Action::Pass, kw("pass")), value(Action::Block, kw("block")))),
        )(i)?;
        end_of_line(i, "end of line")?;
        return Ok(("", Stmt::Default(d, a)));
    }
    let (i, r) = rule_body(i)?;
    end_of_line(i, RULE_TAIL)?;
    Ok(("", Stmt::Rule(r)))
}

fn to_error(line_no: usize, line: &str, e: nom::Err<PErr<'_>>) -> ParseError {
    let (at, expected) = match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => (e.at, e.expected),
        nom::Err::Incomplete(_) => ("", ""),
    };
    // `at` is a suffix of `line`.
    let offset = line.len().saturating_sub(at.len());
    let column = line.get(..offset).map_or(offset, |s| s.chars().count()) + 1;
    let found: String = at.split([' ', '\t']).next().unwrap_or("").chars().take(24).collect();
    ParseError {
        line: line_no,
        column,
        expected: if expected.is_empty() { "a valid token".into() } else { expected.into() },
        found: if found.is_empty() { "end of line".into() } else { format!("{found:?}") },
    }
}

fn strip_comment(line: &str) -> &str {
    match line.find('#') {
        Some(p) => &line[..p],
        None => line,
    }
}

impl FromStr for Rule {
    type Err = ParseError;

    /// Parses one rule (table references are not checked against any table).
    fn from_str(s: &str) -> Result<Rule, ParseError> {
        let line = strip_comment(s.lines().next().unwrap_or(""));
        let (rest, r) = rule_body(line).map_err(|e| to_error(1, line, e))?;
        end_of_line(rest, RULE_TAIL).map_err(|e| to_error(1, line, e))?;
        Ok(r)
    }
}

impl FromStr for Ruleset {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Ruleset, ParseError> {
        Ruleset::parse(s)
    }
}

impl Ruleset {
    /// Parses a ruleset: one statement per line (`set default …`, `table <…> { … }`, or a
    /// rule), `#` starts a comment. Tables must be declared before the rules using them.
    pub fn parse(text: &str) -> Result<Ruleset, ParseError> {
        let mut rs = Ruleset::default();
        for (n, raw) in text.lines().enumerate() {
            let line = strip_comment(raw);
            if line.trim().is_empty() {
                continue;
            }
            let (_, st) = statement(line).map_err(|e| to_error(n + 1, line, e))?;
            match st {
                Stmt::Default(Direction::In, a) => rs.default_in = a,
                Stmt::Default(Direction::Out, a) => rs.default_out = a,
                Stmt::Table(t) => {
                    if rs.table(&t.name).is_some() {
                        let col = line.find('<').unwrap_or(0);
                        return Err(to_error(
                            n + 1,
                            line,
                            nom::Err::Error(PErr {
                                at: &line[col..],
                                expected: "a table name not declared before",
                            }),
                        ));
                    }
                    rs.tables.push(t)
                }
                Stmt::Rule(r) => {
                    for e in [&r.from, &r.to] {
                        if let AddrSpec::Table(t) = &e.addr {
                            if rs.table(t).is_none() {
                                let pat = format!("<{t}");
                                let col = line.find(&pat).unwrap_or(0);
                                return Err(to_error(
                                    n + 1,
                                    line,
                                    nom::Err::Error(PErr {
                                        at: &line[col..],
                                        expected: "a table declared above",
                                    }),
                                ));
                            }
                        }
                    }
                    rs.rules.push(r)
                }
            }
        }
        Ok(rs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        match s.parse::<Rule>() {
            Ok(r) => r.to_string(),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn grammar_table() {
        // (input, canonical output)
        let cases = [
            ("pass in all", "pass in all keep state"),
            ("block out all", "block out all"),
            ("pass in quick proto tcp to any port 22", "pass in quick proto tcp to any port 22 keep state"),
            ("pass in proto 6 from 10.0.0.0/8 port 1024:65535", "pass in proto tcp from 10.0.0.0/8 port 1024:65535 keep state"),
            ("pass out inet6 proto udp from fd00::/8 to { ff02::1:2, fe80::/10 } port { 546, 547 } no state",
             "pass out inet6 proto udp from fd00::/8 to { ff02::1:2, fe80::/10 } port { 546, 547 } no state"),
            ("pass in proto icmp icmp-type 8 code 0", "pass in proto icmp all icmp-type 8 code 0 keep state"),
            ("pass in proto icmp6 all icmp6-type 135", "pass in proto icmp6 all icmp6-type 135 keep state"),
            ("block in quick inet from <bad>", "block in quick inet from <bad>"),
            ("pass in from 10.0.0.1/32 to 10.0.0.2", "pass in from 10.0.0.1 to 10.0.0.2 keep state"),
            ("pass  in\tproto 47   # gre", "pass in proto 47 all keep state"),
            ("pass in proto udp from any port {53 5353:5355} to any", "pass in proto udp from any port { 53, 5353:5355 } keep state"),
            ("pass out proto tcp to any port 80:80", "pass out proto tcp to any port 80 keep state"),
        ];
        for (i, o) in cases {
            assert_eq!(ok(i), o, "input {i:?}");
            assert_eq!(ok(o), o, "canonical form must be stable");
        }
    }

    #[test]
    fn errors_have_positions_and_expectations() {
        // (input, column, substring of expected)
        let cases = [
            ("pas in all", 1, "'pass', 'block'"),
            ("pass up all", 6, "'in' or 'out'"),
            ("pass in proto xyz", 15, "protocol"),
            ("pass in proto 256", 15, "protocol number"),
            ("pass in from 10.0.0.300", 14, "address"),
            ("pass in from 10.0.0.0/33", 23, "prefix length"),
            ("pass in from any port 22", 18, "'proto tcp' or 'proto udp'"),
            ("pass in proto tcp to any port 99999", 31, "port number"),
            ("pass in proto tcp to any port 30:20", 34, "range end"),
            ("pass in all bogus", 13, "end of line"),
            ("block in all keep state", 14, "only apply to pass"),
            ("pass in proto udp all icmp-type 3", 23, "'proto icmp'"),
            ("pass in from {}", 15, "list item"),
            ("pass in from { 10.0.0.1", 24, "address"),
        ];
        for (i, col, exp) in cases {
            let e = i.parse::<Rule>().unwrap_err();
            assert_eq!(e.line, 1);
            assert_eq!(e.column, col, "{i:?}: {e}");
            assert!(e.expected.contains(exp), "{i:?}: {e}");
        }
    }

    #[test]
    fn ruleset_with_tables_and_defaults() {
        let text = "# comment\nset default in block\nset default out pass\n\ntable <sg-1> { 10.0.0.1, 10.0.1.0/24 fd00::1 }\ntable <empty> {}\npass in proto tcp from <sg-1> to any port 22\nblock out quick to <empty>\n";
        let rs = Ruleset::parse(text).unwrap();
        assert_eq!(rs.default_in, Action::Block);
        assert_eq!(rs.default_out, Action::Pass);
        assert_eq!(rs.tables.len(), 2);
        assert_eq!(rs.tables[0].entries.len(), 3);
        assert_eq!(rs.rules.len(), 2);
        assert_eq!(Ruleset::parse(&rs.to_string()).unwrap(), rs);

        let e = Ruleset::parse("set default in block\npass in from <nope>").unwrap_err();
        assert_eq!((e.line, e.column), (2, 14));
        assert!(e.expected.contains("table declared"));
        let e = Ruleset::parse("table <a> {}\ntable <a> {}").unwrap_err();
        assert_eq!(e.line, 2);
        let e = Ruleset::parse("set default sideways block").unwrap_err();
        assert_eq!(e.column, 13);
    }
}
