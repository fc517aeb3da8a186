//! Contract checks that types alone cannot express: id shapes, model paths, ranges.
//!
//! A failed check means the event breaks the public contract: it goes to the DLQ (runtime) or is
//! reported and skipped (`zumik decide`). Cross-field rules that make a *request* unroutable
//! (e.g. more cached than input tokens) are not here: those become `rejected/invalid_request`
//! decisions in the core, so the caller still gets an answer.

use std::fmt;

/// A field that breaks the contract, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Field name as on the wire, e.g. `qos.deadline_ms`.
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// Ids: 1–128 characters, printable, no whitespace (they end up in logs and URLs).
pub fn check_id(field: &'static str, v: &str) -> Result<(), Invalid> {
    if v.is_empty() || v.chars().count() > 128 {
        return Err(Invalid::new(field, "must be 1–128 characters"));
    }
    if v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Invalid::new(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

/// Provider names as lanes use them: 1–64 of `[a-z0-9_.-]` (`openai`, `fireworks`).
pub fn check_provider(field: &'static str, v: &str) -> Result<(), Invalid> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            "must be 1–64 characters of a-z, 0-9, '_', '-', '.' (as in lanes)",
        ))
    }
}

/// Display names: 1–128 characters, no control characters (spaces allowed).
pub fn check_name(field: &'static str, v: &str) -> Result<(), Invalid> {
    if v.trim().is_empty() || v.chars().count() > 128 || v.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must be 1–128 printable characters"));
    }
    Ok(())
}

/// Regions: 1–64 of `[a-z0-9-]`, e.g. `eu-west-1`.
pub fn check_region(field: &'static str, v: &str) -> Result<(), Invalid> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            "must be 1–64 characters of a-z, 0-9 and '-'",
        ))
    }
}

/// Fractions: finite and within 0..=1.
pub fn check_fraction(field: &'static str, v: Option<f64>) -> Result<(), Invalid> {
    match v {
        Some(x) if !(0.0..=1.0).contains(&x) => Err(Invalid::new(field, "must be between 0 and 1")),
        _ => Ok(()),
    }
}

/// A lane / model path: `provider/model[@revision]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPath<'a> {
    pub provider: &'a str,
    /// The model without the revision (what price tables know).
    pub model: &'a str,
    pub revision: Option<&'a str>,
}

impl<'a> ModelPath<'a> {
    /// Splits `provider/model[@rev]`; `None` when the shape is wrong.
    pub fn parse(path: &'a str) -> Option<Self> {
        let (provider, rest) = path.split_once('/')?;
        let (model, revision) = match rest.rsplit_once('@') {
            Some((m, r)) => (m, Some(r)),
            None => (rest, None),
        };
        let provider_ok = !provider.is_empty()
            && provider.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        let model_ok = !model.is_empty() && !model.starts_with('/') && !model.ends_with('/');
        let rev_ok = revision.is_none_or(|r| !r.is_empty());
        (provider_ok && model_ok && rev_ok).then_some(ModelPath {
            provider,
            model,
            revision,
        })
    }
}

pub fn check_model_path(field: &'static str, v: &str) -> Result<(), Invalid> {
    if v.len() > 256 || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Invalid::new(
            field,
            "must be at most 256 characters without whitespace",
        ));
    }
    match ModelPath::parse(v) {
        Some(_) => Ok(()),
        None => Err(Invalid::new(
            field,
            "must be `provider/model[@revision]` with a lowercase provider name",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_paths_split_into_provider_model_revision() {
        let p = ModelPath::parse("fireworks/qwen3-coder-480b@2025-07").unwrap();
        assert_eq!(
            (p.provider, p.model, p.revision),
            ("fireworks", "qwen3-coder-480b", Some("2025-07"))
        );
        let p = ModelPath::parse("openai/gpt-4o").unwrap();
        assert_eq!(
            (p.provider, p.model, p.revision),
            ("openai", "gpt-4o", None)
        );
        for bad in ["gpt-4o", "/gpt-4o", "openai/", "OpenAI/gpt", "openai/gpt@"] {
            assert!(ModelPath::parse(bad).is_none(), "{bad} should be rejected");
        }
    }

    #[test]
    fn ids_regions_fractions() {
        assert!(check_id("x", "prj_1").is_ok());
        assert!(check_id("x", "").is_err());
        assert!(check_id("x", "a b").is_err());
        assert!(check_id("x", &"a".repeat(129)).is_err());
        assert!(check_region("r", "eu-west-1").is_ok());
        assert!(check_region("r", "EU").is_err());
        assert!(check_fraction("f", Some(1.5)).is_err());
        assert!(check_fraction("f", Some(f64::NAN)).is_err());
        assert!(check_fraction("f", Some(0.2)).is_ok());
    }
}
