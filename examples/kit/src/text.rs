//! Checks for user-supplied text. PostgreSQL refuses NUL in `text`, and
//! control characters have no place in names or chat lines: both are a 422,
//! never a 500.

use crate::error::FieldError;

/// Whether control characters other than tab and newline are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// One line: no control character at all (names).
    Single,
    /// Text that may span lines: `\n`, `\r` and `\t` are kept.
    Multi,
}

/// Validate a required text field: trimmed, `min..=max` characters (not
/// bytes), no disallowed control characters. Returns the trimmed text or
/// one field error.
pub fn required(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    lines: Lines,
) -> Result<String, FieldError> {
    let trimmed = value.trim();
    let bad_char = trimmed
        .chars()
        .any(|c| c.is_control() && !(lines == Lines::Multi && matches!(c, '\n' | '\r' | '\t')));
    if bad_char {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            format!("{field} must not contain control characters"),
        ));
    }
    let len = trimmed.chars().count();
    if len < min {
        let (code, message) = if len == 0 {
            ("required", format!("{field} must not be empty"))
        } else {
            (
                "too_short",
                format!("{field} must be at least {min} characters"),
            )
        };
        return Err(FieldError::new(field, code, message));
    }
    if len > max {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// An optional text field: blank means none.
pub fn optional(
    field: &str,
    value: Option<&str>,
    max: usize,
    lines: Lines,
) -> Result<Option<String>, FieldError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => required(field, v, 1, max, lines).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters_and_control_chars_are_refused() {
        assert_eq!(
            required("name", "  bot  ", 1, 64, Lines::Single).ok(),
            Some("bot".into())
        );
        assert_eq!(
            required("name", "   ", 1, 64, Lines::Single)
                .unwrap_err()
                .code,
            "required"
        );
        assert!(required("name", &"é".repeat(64), 1, 64, Lines::Single).is_ok());
        assert_eq!(
            required("name", &"é".repeat(65), 1, 64, Lines::Single)
                .unwrap_err()
                .code,
            "too_long"
        );
        assert_eq!(
            required("name", "a\0b", 1, 64, Lines::Single)
                .unwrap_err()
                .code,
            "invalid_characters"
        );
        assert_eq!(
            required("name", "a\nb", 1, 64, Lines::Single)
                .unwrap_err()
                .code,
            "invalid_characters"
        );
        assert!(required("body", "a\nb\tc", 1, 64, Lines::Multi).is_ok());
        assert!(required("body", "a\u{7}b", 1, 64, Lines::Multi).is_err());
        assert_eq!(optional("d", Some("  "), 10, Lines::Multi), Ok(None));
        assert_eq!(optional("d", None, 10, Lines::Multi), Ok(None));
    }
}
