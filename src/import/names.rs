//! Connector names the configuration accepts (1-128 of `A-Z a-z 0-9 . _ -`, unique), made
//! from Exchange's names, which may hold spaces, parentheses and any other character.

use std::collections::{HashMap, HashSet};

/// Room left under the configuration's 128 characters for a `-2`, `-3` … suffix.
const MAX_BASE: usize = 120;

/// `raw` with every run of other characters replaced by one `-`: `Outbound to 5f1c…`
/// becomes `Outbound-to-5f1c…`. Case is kept, so the name reads as it does in Exchange.
pub fn safe(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for ch in raw.chars() {
        if ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-') {
            out.push(ch);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    // Only ASCII was pushed, so any byte index is a character boundary.
    let trimmed = out.trim_matches('-');
    let cut = &trimmed[..trimmed.len().min(MAX_BASE)];
    match cut.trim_end_matches('-') {
        "" => "connector".to_owned(),
        name => name.to_owned(),
    }
}

/// The names handed out so far, and for each base the next suffix to try: a scan from `-2`
/// at every clash made 400,000 connectors of one name quadratic.
#[derive(Debug, Default)]
pub struct Names {
    taken: HashSet<String>,
    next: HashMap<String, usize>,
}

impl Names {
    /// `base`, or `base-2`, `base-3` … if it is taken.
    pub fn claim(&mut self, base: &str) -> String {
        if self.taken.insert(base.to_owned()) {
            return base.to_owned();
        }
        let next = self.next.entry(base.to_owned()).or_insert(2);
        loop {
            let name = format!("{base}-{next}");
            *next += 1;
            if self.taken.insert(name.clone()) {
                return name;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        for (raw, want) in [
            (
                "Outbound to 5f1c9e02-8f7a-4a5e-9b1e-3d2c7a6b4e10",
                "Outbound-to-5f1c9e02-8f7a-4a5e-9b1e-3d2c7a6b4e10",
            ),
            ("Fabrikam (partner, TLS)", "Fabrikam-partner-TLS"),
            ("  spaced  out  ", "spaced-out"),
            ("Müller & Söhne", "M-ller-S-hne"),
            ("出站连接器", "connector"),
            ("", "connector"),
            ("a.b_c-d", "a.b_c-d"),
        ] {
            assert_eq!(safe(raw), want, "{raw:?}");
        }
        let long = safe(&"x".repeat(300));
        assert_eq!(long.len(), MAX_BASE);
    }

    #[test]
    fn names_are_made_unique() {
        let mut names = Names::default();
        let got: Vec<String> = ["a", "a", "a-2", "a", "b"]
            .iter()
            .map(|base| names.claim(base))
            .collect();
        assert_eq!(got, ["a", "a-2", "a-2-2", "a-3", "b"]);
    }

    #[test]
    fn a_name_taken_by_a_suffix_is_skipped() {
        let mut names = Names::default();
        let got: Vec<String> = ["x-2", "x", "x", "x", "x-3"]
            .iter()
            .map(|base| names.claim(base))
            .collect();
        assert_eq!(got, ["x-2", "x", "x-3", "x-4", "x-3-2"]);
    }
}
