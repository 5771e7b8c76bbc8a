//! The refresh-token cookie: `HttpOnly; Secure; SameSite=Strict; Path=/auth`.

use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

pub const REFRESH_COOKIE: &str = "gatehouse_refresh";

fn refresh_cookie(value: String, max_age: i64, secure: bool) -> Cookie<'static> {
    Cookie::build((REFRESH_COOKIE, value))
        .max_age(cookie::time::Duration::seconds(max_age.max(0)))
        .path("/auth")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build()
}

/// The jar with a refresh token set for `max_age` seconds.
pub fn set_refresh(jar: CookieJar, token: &str, max_age: i64, secure: bool) -> CookieJar {
    jar.add(refresh_cookie(token.to_owned(), max_age, secure))
}

/// The jar with the refresh cookie deleted (empty, `Max-Age=0`).
pub fn clear_refresh(jar: CookieJar, secure: bool) -> CookieJar {
    jar.add(refresh_cookie(String::new(), 0, secure))
}

/// The device cookie (see `ratelimit`): `HttpOnly; SameSite=Strict;
/// Path=/`, `Secure` unless the client is on loopback. Path `/` because
/// every password check (login under `/auth`, `PATCH /me`, ...) reads it.
pub fn set_device(jar: CookieJar, value: String, max_age: i64, secure: bool) -> CookieJar {
    jar.add(
        Cookie::build((crate::ratelimit::DEVICE_COOKIE, value))
            .max_age(cookie::time::Duration::seconds(max_age.max(0)))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(secure)
            .build(),
    )
}

/// The refresh token from the request's cookies, if any.
pub fn read_refresh(jar: &CookieJar) -> Option<String> {
    jar.get(REFRESH_COOKIE)
        .map(|c| c.value().trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, header};

    use super::*;

    fn set_cookie(jar: CookieJar) -> String {
        use axum::response::IntoResponse;
        let res = (jar, ()).into_response();
        res.headers()[header::SET_COOKIE]
            .to_str()
            .expect("str")
            .to_owned()
    }

    #[test]
    fn cookie_flags_and_parsing() {
        let s = set_cookie(set_refresh(CookieJar::new(), "abc", 60, true));
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
        assert!(!set_cookie(set_refresh(CookieJar::new(), "abc", 60, false)).contains("Secure"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; gatehouse_refresh=tok; c=d".parse().expect("hv"),
        );
        assert_eq!(
            read_refresh(&CookieJar::from_headers(&h)).as_deref(),
            Some("tok")
        );
    }
}
