use super::Invalid;

/// A first or last name: trimmed, at most 100 characters, no control
/// characters. An empty value means "no name" (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

pub const MAX_NAME_CHARS: usize = 100;

impl PersonName {
    pub fn parse_optional(raw: Option<&str>) -> Result<Option<Self>, Invalid> {
        let Some(raw) = raw else { return Ok(None) };
        let s = raw.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if s.chars().count() > MAX_NAME_CHARS {
            return Err(Invalid::new(
                "too_long",
                format!("at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid::new(
                "invalid_characters",
                "control characters are not allowed",
            ));
        }
        Ok(Some(Self(s.to_owned())))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_empties_to_none() {
        assert_eq!(PersonName::parse_optional(None), Ok(None));
        assert_eq!(PersonName::parse_optional(Some("   ")), Ok(None));
        let n = PersonName::parse_optional(Some("  Ada "))
            .expect("valid")
            .expect("some");
        assert_eq!(n.into_inner(), "Ada");
    }

    #[test]
    fn rejects_long_and_control() {
        assert_eq!(
            PersonName::parse_optional(Some(&"a".repeat(101)))
                .unwrap_err()
                .code,
            "too_long"
        );
        assert!(PersonName::parse_optional(Some(&"é".repeat(100))).is_ok());
        assert_eq!(
            PersonName::parse_optional(Some("a\u{7}b"))
                .unwrap_err()
                .code,
            "invalid_characters"
        );
    }
}
