//! A first pass over a filter's text, on real tokens, that bounds what the
//! `cql2` parser may spend on it: the parser backtracks, so it must only see
//! text whose worst case is cheap.
//!
//! The `cql2` grammar reads `(` as a group and, when that fails, again as a
//! list; neither remembers the other's work. A parse that fails inside `k`
//! groups so reads what those groups hold up to 2^k times (10 groups around
//! 400 terms with an error at the end: 1.8 s in a release build). The pass here
//! charges every token 2^(groups around it) and refuses the text when that sum
//! passes [`MAX_PARSE_WORK`], whether or not the parse would fail.

/// How deep parentheses (groups, calls and geometry literals alike) may nest.
/// A MULTIPOLYGON inside a function inside a few groups stays well below this.
pub const MAX_TEXT_NESTING: usize = 10;

/// How many terms (properties, values and geometry literals) a filter may hold.
pub const MAX_TERMS: usize = 400;

/// The most the `cql2` parser may be made to read, in tokens, counting each
/// token once per way a failing parse can reach it (see the module's notes).
/// At about a microsecond per token read in a release build, a refused parse
/// so costs tens of milliseconds at worst.
pub const MAX_PARSE_WORK: usize = 1 << 15;

/// How deep objects and arrays may nest in CQL2 JSON: a MULTIPOLYGON takes
/// five levels and each operator two, so this leaves a dozen operators.
pub const MAX_JSON_NESTING: usize = 32;

/// What reading a filter's text would cost, as the pass measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextCost {
    /// The deepest nesting of parentheses and brackets.
    pub deepest: usize,
    /// Properties, values and geometry literals outside geometry literals.
    pub terms: usize,
    /// Tokens, each counted 2^(groups around it): the parser's worst case.
    pub parse_work: usize,
    /// Characters the pass looked at: each once.
    pub steps: usize,
}

/// Why a filter's text was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("parentheses nest more than {MAX_TEXT_NESTING} deep")]
    TooDeep,
    #[error("the {open:?} at character {at} is never closed")]
    Unclosed { open: char, at: usize },
    #[error("the {close:?} at character {at} closes nothing")]
    Unopened { close: char, at: usize },
    #[error("the {close:?} at character {at} closes the {open:?} at character {opened}")]
    Mismatched {
        open: char,
        opened: usize,
        close: char,
        at: usize,
    },
    #[error("the {quote} at character {at} is never closed")]
    UnclosedQuote { quote: &'static str, at: usize },
    #[error("more than {MAX_TERMS} terms (properties, values and geometries)")]
    TooManyTerms,
    #[error(
        "too many terms inside nested parentheses: parsing could read {0} tokens, more than {MAX_PARSE_WORK}; use fewer groups"
    )]
    TooCostly(usize),
    #[error("{0:?} repeated more than {MAX_TEXT_NESTING} times in a row")]
    TooManyPrefixes(&'static str),
    #[error("objects and arrays nest more than {MAX_JSON_NESTING} deep")]
    JsonTooDeep,
}

/// What a parenthesis opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// `(` after an operator or at the start: the parser may read it twice.
    Group,
    /// `(` after a function's name: read once per reading of what holds it.
    Call,
    /// `(` of a geometry literal or inside one: coordinates, not terms.
    Geometry,
    /// `[`: not CQL2 text, but balanced all the same.
    Bracket,
}

/// The tokens the pass tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// A word that names a property or a function.
    Name,
    /// A word starting a geometry literal, or its `Z`/`M`/`ZM`/`EMPTY`.
    GeometryWord,
    /// `NOT`, or a unary `-`: may repeat.
    Prefix(&'static str),
    /// `AND`, `OR`, `LIKE` and the other words that join terms.
    Keyword,
    /// A string, a number, `TRUE`, `FALSE` or `NULL`.
    Value,
    /// Anything else: an operator or a comma.
    Symbol,
}

const GEOMETRY_WORDS: &[&str] = &[
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
];

const KEYWORDS: &[&str] = &["and", "or", "in", "like", "between", "is", "div", "ilike"];

/// Measures a filter's text on its tokens and refuses what would cost the
/// parser too much: unbalanced or too deep parentheses, too many terms, or
/// too many terms inside nested groups.
pub fn check_text(raw: &str) -> Result<TextCost, GuardError> {
    let chars: Vec<char> = raw.chars().collect();
    let mut cost = TextCost::default();
    let mut stack: Vec<(Frame, char, usize)> = Vec::new();
    let mut groups = 0usize;
    let mut previous: Option<Token> = None;
    let mut run: (Option<&'static str>, usize) = (None, 0);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        i += 1;
        let in_geometry = matches!(stack.last(), Some((Frame::Geometry, _, _)));
        let token = match c {
            c if c.is_whitespace() => continue,
            '\'' | '"' => {
                // '' and "" inside stand for the quote itself.
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(GuardError::UnclosedQuote {
                                quote: if c == '\'' { "string" } else { "quoted name" },
                                at: start,
                            });
                        }
                        Some(&q) if q == c && chars.get(i + 1) == Some(&c) => i += 2,
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                if c == '\'' { Token::Value } else { Token::Name }
            }
            '(' | '[' => {
                let frame = match (c, previous) {
                    ('[', _) => Frame::Bracket,
                    _ if in_geometry => Frame::Geometry,
                    (_, Some(Token::GeometryWord)) => Frame::Geometry,
                    (_, Some(Token::Name)) => Frame::Call,
                    _ => Frame::Group,
                };
                stack.push((frame, c, start));
                if stack.len() > MAX_TEXT_NESTING {
                    return Err(GuardError::TooDeep);
                }
                cost.deepest = cost.deepest.max(stack.len());
                if frame == Frame::Group {
                    groups += 1;
                }
                previous = Some(Token::Symbol);
                run = (None, 0);
                continue;
            }
            ')' | ']' => {
                let (frame, open, opened) = stack.pop().ok_or(GuardError::Unopened {
                    close: c,
                    at: start,
                })?;
                if (open == '(') != (c == ')') {
                    return Err(GuardError::Mismatched {
                        open,
                        opened,
                        close: c,
                        at: start,
                    });
                }
                if frame == Frame::Group {
                    groups -= 1;
                }
                previous = Some(Token::Value);
                run = (None, 0);
                continue;
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i).is_some_and(char::is_ascii_digit)) =>
            {
                while i < chars.len() {
                    let d = chars[i];
                    let exponent_sign = matches!(d, '+' | '-') && matches!(chars[i - 1], 'e' | 'E');
                    if d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E') || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                Token::Value
            }
            c if c.is_alphabetic() || c == '_' => {
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | ':'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect::<String>().to_lowercase();
                let w = word.as_str();
                if GEOMETRY_WORDS.contains(&w)
                    || (matches!(w, "z" | "m" | "zm" | "empty")
                        && previous == Some(Token::GeometryWord))
                {
                    Token::GeometryWord
                } else if w == "not" {
                    Token::Prefix("NOT")
                } else if KEYWORDS.contains(&w) {
                    Token::Keyword
                } else if matches!(w, "true" | "false" | "null") {
                    Token::Value
                } else {
                    Token::Name
                }
            }
            '-' if !matches!(previous, Some(Token::Value | Token::Name)) => Token::Prefix("-"),
            _ => Token::Symbol,
        };
        // Each token is read once per way a failing parse can reach it.
        cost.parse_work = cost
            .parse_work
            .saturating_add(1usize.checked_shl(groups as u32).unwrap_or(usize::MAX));
        if cost.parse_work > MAX_PARSE_WORK {
            return Err(GuardError::TooCostly(cost.parse_work));
        }
        let counts_as_term = match token {
            Token::Name | Token::Value => !in_geometry,
            Token::GeometryWord => !in_geometry && previous != Some(Token::GeometryWord),
            _ => false,
        };
        if counts_as_term {
            cost.terms += 1;
            if cost.terms > MAX_TERMS {
                return Err(GuardError::TooManyTerms);
            }
        }
        run = match (token, run) {
            (Token::Prefix(p), (Some(q), n)) if p == q => (Some(p), n + 1),
            (Token::Prefix(p), _) => (Some(p), 1),
            _ => (None, 0),
        };
        if let (Some(p), n) = run
            && n > MAX_TEXT_NESTING
        {
            return Err(GuardError::TooManyPrefixes(p));
        }
        previous = Some(token);
    }
    cost.steps = chars.len();
    match stack.pop() {
        Some((_, open, at)) => Err(GuardError::Unclosed { open, at }),
        None => Ok(cost),
    }
}

/// Refuses CQL2 JSON whose objects and arrays nest more than
/// [`MAX_JSON_NESTING`] deep, before it is parsed: every later pass over the
/// filter recurses as deep as it nests.
pub fn check_json(raw: &str) -> Result<(), GuardError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in raw.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_NESTING {
                    return Err(GuardError::JsonTooDeep);
                }
            }
            // The JSON parser reports any imbalance itself.
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn or_of(n: usize) -> String {
        (0..n)
            .map(|i| format!("name = 'x{i}'"))
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    #[test]
    fn a_quote_inside_a_quoted_name_starts_no_string() {
        let deep = format!("\"a'b\" = 'x' AND {}name = 'x'", "(".repeat(22));
        assert_eq!(check_text(&deep), Err(GuardError::TooDeep));
        let closed = format!(
            "\"a'b\" = 'x' AND {}name = 'x'{}",
            "(".repeat(3),
            ")".repeat(3)
        );
        assert_eq!(check_text(&closed).unwrap().deepest, 3);
    }

    #[test]
    fn parentheses_inside_strings_and_quoted_names_do_not_count() {
        let c = check_text("name = 'a(( it''s' AND \"we\"\"ird(\" = 'b)'").unwrap();
        assert_eq!(c.deepest, 0);
        assert_eq!(c.terms, 4);
        assert!(matches!(
            check_text("name = 'open"),
            Err(GuardError::UnclosedQuote { at: 7, .. })
        ));
        assert!(matches!(
            check_text("\"name = 'x'"),
            Err(GuardError::UnclosedQuote { at: 0, .. })
        ));
    }

    #[test]
    fn unbalanced_parentheses_are_refused_where_they_are() {
        assert_eq!(
            check_text("(name = 'x'"),
            Err(GuardError::Unclosed { open: '(', at: 0 })
        );
        assert_eq!(
            check_text("name = 'x')"),
            Err(GuardError::Unopened { close: ')', at: 10 })
        );
        assert!(matches!(
            check_text("(name = 'x']"),
            Err(GuardError::Mismatched { .. })
        ));
    }

    #[test]
    fn terms_are_capped_but_coordinates_are_not_terms() {
        assert_eq!(check_text(&or_of(200)).unwrap().terms, 400);
        assert_eq!(check_text(&or_of(201)), Err(GuardError::TooManyTerms));
        let ring: Vec<String> = (0..=600).map(|i| format!("{} 1", i % 7)).collect();
        let polygon = format!("S_INTERSECTS(geometry, POLYGON Z (({})))", ring.join(", "));
        let c = check_text(&polygon).unwrap();
        assert_eq!((c.terms, c.deepest), (3, 3));
    }

    #[test]
    fn terms_inside_nested_groups_cost_more_the_deeper_they_are() {
        // 399 tokens at the top; inside 3 groups, 8 times that; inside 8, too many.
        let flat = check_text(&or_of(100)).unwrap().parse_work;
        let nested = format!("{}{}{}", "(".repeat(3), or_of(100), ")".repeat(3));
        assert_eq!(check_text(&nested).unwrap().parse_work, flat * 8);
        let too = format!("{}{}{}", "(".repeat(8), or_of(100), ")".repeat(8));
        assert!(matches!(check_text(&too), Err(GuardError::TooCostly(_))));
        // Calls and geometries are read once: only groups double.
        let called = "S_INTERSECTS(geometry, MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0))))";
        assert_eq!(check_text(called).unwrap().parse_work, 15);
    }

    #[test]
    fn prefixes_may_repeat_only_a_little() {
        assert!(check_text("NOT NOT name = 'x'").is_ok());
        assert!(check_text("count = - - 1").is_ok());
        let nots = format!("{}name = 'x'", "NOT ".repeat(11));
        assert_eq!(check_text(&nots), Err(GuardError::TooManyPrefixes("NOT")));
        assert!(check_text("count - 1 - 1 - 1 - 1 - 1 - 1 - 1 - 1 - 1 - 1 - 1 = 0").is_ok());
    }

    #[test]
    fn json_nesting_is_capped_outside_strings() {
        let deep = format!("{}true{}", "[".repeat(33), "]".repeat(33));
        assert_eq!(check_json(&deep), Err(GuardError::JsonTooDeep));
        let quoted = format!(
            "{{\"op\": \"=\", \"args\": [{{\"property\": \"name\"}}, \"{}\\\"\"]}}",
            "[{".repeat(40)
        );
        assert!(check_json(&quoted).is_ok());
    }

    mod growth {
        //! Parse-and-evaluate work grows at most linearly with a filter's size,
        //! well-formed or not, hostile shapes included: counted, not timed.

        use super::super::super::testing::{Q, thing};
        use super::super::super::{Lang, parse};
        use super::super::*;
        use proptest::prelude::*;

        /// Pieces of filters, whole and broken, the hostile shapes among them.
        const PIECES: &[&str] = &[
            "name = 'x'",
            " OR ",
            " AND ",
            "NOT ",
            "(",
            ")",
            "\"a'b\" = 'x'",
            "'it''s'",
            "count > 2",
            "S_INTERSECTS(geometry, POINT(1 2))",
            "S_DWITHIN(geometry, MULTIPOINT((1 2), (3 4)), 1000)",
            "POLYGON((0 0, 1 0, 1 1, 0 0))",
            ", ",
            "name IN ('a', 'b')",
            "-",
            "[",
            "\"",
        ];

        fn text(picks: &[usize]) -> String {
            picks.iter().map(|&i| PIECES[i % PIECES.len()]).collect()
        }

        /// The work a filter costs, counted: the pass over its characters,
        /// the tokens the parser may read, and the terms an evaluation visits.
        fn work(raw: &str) -> usize {
            let Ok(cost) = check_text(raw) else {
                return raw.chars().count();
            };
            assert_eq!(cost.steps, raw.chars().count());
            assert!(cost.parse_work <= MAX_PARSE_WORK);
            let evaluated = match parse(raw, Lang::Text, Q) {
                Ok(expr) => {
                    assert!(expr.terms() <= MAX_TERMS);
                    expr.matches(&thing(Some("x"), 1.0, 2.0));
                    expr.terms()
                }
                Err(_) => 0,
            };
            cost.steps + cost.parse_work.min(raw.len()) + evaluated
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn parse_and_evaluate_work_grows_at_most_linearly_with_the_filter(
                picks in prop::collection::vec(0usize..64, 1..40),
                doublings in 1u32..6,
            ) {
                let mut sizes = Vec::new();
                let base = text(&picks);
                for k in 0..doublings {
                    let raw = base.repeat(1 << k);
                    let bytes = raw.len().max(1);
                    // Parse work is charged up to the text's size, so every
                    // term of the sum is at most a constant times the size.
                    sizes.push((bytes, work(&raw)));
                }
                for (bytes, w) in sizes {
                    prop_assert!(w <= 3 * bytes, "{w} work for {bytes} bytes");
                }
            }

            #[test]
            fn hostile_shapes_of_any_size_are_refused_or_cheap(
                depth in 0usize..40, terms in 1usize..3000, quoted in any::<bool>(), closed in any::<bool>(),
            ) {
                let or: Vec<String> = (0..terms).map(|i| format!("name = 'x{i}'")).collect();
                let head = if quoted { "\"a'b\" = 'x' AND " } else { "" };
                let tail = if closed { ")".repeat(depth) } else { String::new() };
                let raw = format!("{head}{}{}{tail}", "(".repeat(depth), or.join(" OR "));
                match check_text(&raw) {
                    Ok(cost) => {
                        prop_assert!(closed || depth == 0);
                        prop_assert!(cost.parse_work <= MAX_PARSE_WORK);
                        prop_assert!(cost.terms <= MAX_TERMS);
                    }
                    Err(_) => prop_assert!(depth > MAX_TEXT_NESTING || !closed || terms * 2 > MAX_TERMS || (1usize << depth.min(20)) * terms > MAX_PARSE_WORK / 8),
                }
            }
        }
    }
}
