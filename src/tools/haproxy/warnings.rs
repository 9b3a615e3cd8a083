//! The warnings the import returns, and the secrets masked in them.

use super::sections::Section;
use super::values::env_ref;

#[derive(Default)]
pub(super) struct Warnings {
    pub(super) list: Vec<String>,
    /// Values from the file that must never be shown: literal passwords, `stats auth`,
    /// `userlist` passwords, `setenv` values.
    pub(super) secrets: Vec<String>,
}

impl Warnings {
    pub(super) fn push(&mut self, s: String) {
        if !self.list.contains(&s) {
            self.list.push(s);
        }
    }

    pub(super) fn secret(&mut self, s: &str) {
        if !s.is_empty() && !self.secrets.iter().any(|x| x == s) {
            self.secrets.push(s.to_string());
        }
    }

    /// The warnings, with any secret that slipped into one masked. The masking is a second
    /// line of defence: no warning is built from a word that can hold a secret. Very short
    /// values are not masked, since they would garble ordinary words.
    pub(super) fn finish(mut self) -> Vec<String> {
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.list
            .into_iter()
            .map(|mut s| {
                for secret in self.secrets.iter().filter(|x| x.chars().count() >= 3) {
                    s = s.replace(secret.as_str(), "***");
                }
                s
            })
            .collect()
    }
}

/// Passwords held outside the checks: `stats auth user:password`, `userlist` users,
/// `setenv`/`presetenv` values, `${VAR-default}` defaults.
pub(super) fn collect_secrets(secs: &[Section], w: &mut Warnings) {
    for l in secs.iter().flat_map(|s| s.lines.iter()) {
        if l.is(&["stats", "auth"]) {
            if let Some((_, pw)) = l.w(2).split_once(':') {
                w.secret(pw);
            }
        } else if l.is(&["user"]) {
            for (i, word) in l.words.iter().enumerate() {
                if matches!(word.text.as_str(), "password" | "insecure-password") {
                    w.secret(l.w(i + 1));
                }
            }
        } else if l.is(&["setenv"]) || l.is(&["presetenv"]) {
            w.secret(l.w(2));
        }
        for word in &l.words {
            if let Some((_, Some(default))) = env_ref(&word.text) {
                w.secret(default);
            }
        }
    }
}
