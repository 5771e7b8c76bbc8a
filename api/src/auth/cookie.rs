//! The refresh-token cookie: `HttpOnly; Secure; SameSite=Strict; Path=/auth`.

use axum::http::{HeaderMap, HeaderValue, header};

pub const REFRESH_COOKIE: &str = "gatehouse_refresh";

/// `Set-Cookie` carrying a refresh token for `max_age` seconds.
pub fn set_refresh(token: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{REFRESH_COOKIE}={token}; Max-Age={}; Path=/auth; HttpOnly; SameSite=Strict{secure}",
        max_age.max(0)
    ))
    .ok()
}

/// `Set-Cookie` that deletes the refresh cookie.
pub fn clear_refresh(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{REFRESH_COOKIE}=; Max-Age=0; Path=/auth; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("gatehouse_refresh=; Max-Age=0; Path=/auth"))
}

/// The refresh token from the `Cookie` header, if any.
pub fn read_refresh(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == REFRESH_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_flags_and_parsing() {
        let v = set_refresh("abc", 60, true).expect("hv");
        let s = v.to_str().expect("str");
        for part in [
            "gatehouse_refresh=abc",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/auth",
            "Max-Age=60",
        ] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
        assert!(
            !set_refresh("abc", 60, false)
                .expect("hv")
                .to_str()
                .expect("s")
                .contains("Secure")
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; gatehouse_refresh=tok; c=d".parse().expect("hv"),
        );
        assert_eq!(read_refresh(&h).as_deref(), Some("tok"));
    }
}
