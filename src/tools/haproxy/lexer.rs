//! Cutting a line into words the way HAProxy does: blanks, `"weak"` and `'strong'` quoting,
//! `\` escapes, `#` comments.

use std::fmt::Write as _;

/// One word of a line, after quotes and escapes are removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Word {
    pub(super) text: String,
    /// Part of it was inside double quotes, the only place HAProxy expands `${VAR}`.
    pub(super) dquoted: bool,
}

/// One configuration line (continuations joined), cut into words.
#[derive(Clone, Debug)]
pub(super) struct Line {
    /// 1-based number of its first physical line, for error messages.
    pub(super) no: usize,
    pub(super) words: Vec<Word>,
}

impl Line {
    pub(super) fn w(&self, i: usize) -> &str {
        self.words.get(i).map_or("", |w| w.text.as_str())
    }

    /// Whether the line starts with these words.
    pub(super) fn is(&self, kws: &[&str]) -> bool {
        kws.iter().enumerate().all(|(i, k)| self.w(i) == *k)
    }

    /// The line as it could be written in HAProxy, for warnings. Never used on lines that can
    /// hold a secret (`tcp-check send`, `stats auth`, `user`, …).
    pub(super) fn show(&self) -> String {
        show_words(&self.words)
    }
}

pub(super) fn show_words(words: &[Word]) -> String {
    let mut s = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        for c in w.text.chars() {
            match c {
                ' ' => s.push_str("\\ "),
                '\r' => s.push_str("\\r"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(s, "\\x{:02x}", u32::from(c));
                }
                c => s.push(c),
            }
        }
    }
    s
}

/// Cuts one line into words like HAProxy 2.x (configuration manual §2.2): blanks separate
/// words unless escaped or quoted; `#` starts a comment; environment variables are left as
/// written (`${NAME}`), since only their names matter here.
pub(super) fn split_words(line: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut started, mut dq, mut sq, mut had_dq) = (false, false, false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if sq {
            if c == '\'' {
                sq = false;
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                started = true;
                match chars.next() {
                    Some('n') => cur.push('\n'),
                    Some('r') => cur.push('\r'),
                    Some('t') => cur.push('\t'),
                    Some('x') => {
                        let hex: String = chars.clone().take(2).collect();
                        match u8::from_str_radix(&hex, 16) {
                            Ok(b) if hex.len() == 2 => {
                                cur.push(char::from(b));
                                chars.nth(1);
                            }
                            _ => cur.push_str("\\x"),
                        }
                    }
                    Some(e @ (' ' | '\t' | '#' | '\\' | '\'' | '"' | '$')) => cur.push(e),
                    Some(other) => {
                        cur.push('\\');
                        cur.push(other);
                    }
                    None => cur.push('\\'),
                }
            }
            '"' => {
                dq = !dq;
                started = true;
                had_dq = true;
            }
            '\'' if !dq => {
                sq = true;
                started = true;
            }
            '#' if !dq => break,
            ' ' | '\t' if !dq => {
                if started {
                    words.push(Word {
                        text: std::mem::take(&mut cur),
                        dquoted: had_dq,
                    });
                    started = false;
                    had_dq = false;
                }
            }
            _ => {
                cur.push(c);
                started = true;
            }
        }
    }
    if sq || dq {
        return Err(format!(
            "unterminated {} quote",
            if sq { "single" } else { "double" }
        ));
    }
    if started {
        words.push(Word {
            text: cur,
            dquoted: had_dq,
        });
    }
    Ok(words)
}
