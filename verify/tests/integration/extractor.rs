//! The axum extractors and `verify_bearer`: status, problem+json body and
//! `WWW-Authenticate` of every refusal.

use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use gatehouse_verify::{
    AuthError, Claims, FromClaims, OptionalVerified, Verified, Verifier, VerifyError,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use uuid::Uuid;

use crate::support::{FakeGatehouse, Keypair, claims, claims_at, eventually, now};

#[derive(Clone, FromRef)]
struct AppState {
    verifier: Verifier,
    name: &'static str,
}

/// An app's own view of the token.
#[derive(Deserialize)]
struct Caller {
    sub: Uuid,
    client_id: Option<String>,
}

impl FromClaims for Caller {
    fn from_claims(claims: Claims) -> Result<Self, VerifyError> {
        claims.deserialize_into()
    }
}

fn app(verifier: Verifier) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(
                |State(app): State<&'static str>, Verified(c): Verified| async move {
                    Json(json!({"app": app, "sub": c.sub, "sid": c.sid, "role": c.role}))
                },
            ),
        )
        .route(
            "/caller",
            get(|Verified(c): Verified<Caller>| async move { Json(json!({"sub": c.sub, "client_id": c.client_id})) }),
        )
        .route(
            "/maybe",
            get(|OptionalVerified(c): OptionalVerified| async move {
                Json(json!({"sub": c.map(|c| c.sub)}))
            }),
        )
        .route(
            "/opt",
            get(|v: Option<Verified>| async move { Json(json!({"sub": v.map(|Verified(c)| c.sub)})) }),
        )
        .with_state(AppState {
            verifier,
            name: "test",
        })
}

async fn call(app: &Router, path: &str, auth: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::get(path);
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

fn assert_problem(got: &(StatusCode, HeaderMap, Value), code: &str, challenge: &str, what: &str) {
    let (status, headers, body) = got;
    assert_eq!(*status, StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/problem+json",
        "{what}"
    );
    assert_eq!(headers[header::WWW_AUTHENTICATE], challenge, "{what}");
    assert_eq!(
        headers.get_all(header::WWW_AUTHENTICATE).iter().count(),
        1,
        "{what}"
    );
    let detail = if code == "missing_token" {
        "A bearer access token is required."
    } else {
        "The access token is invalid, expired or revoked."
    };
    assert_eq!(
        *body,
        json!({
            "type": format!("urn:gatehouse:problem:{code}"),
            "title": "Unauthorized",
            "status": 401,
            "detail": detail,
            "code": code,
        }),
        "{what}"
    );
}

#[tokio::test]
async fn the_extractor_answers_401_problems_with_the_right_challenge() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = gh.verifier().await;
    let app = app(verifier.clone());
    let sid = Uuid::new_v4();
    let iat = now();
    let token = key.sign(&claims_at(sid, iat));

    let ok = call(&app, "/whoami", Some(&format!("Bearer {token}"))).await;
    assert_eq!(ok.0, StatusCode::OK);
    assert_eq!(ok.2["sid"], json!(sid));
    assert_eq!(ok.2["role"], "user");
    assert_eq!(ok.2["app"], "test");

    for (auth, what) in [
        (None, "no header"),
        (Some("Basic dXNlcjpwYXNz"), "another scheme"),
        (Some("Bearer"), "no token"),
        (Some("Bearer "), "empty token"),
        (Some("Bearer a b"), "two tokens"),
        (Some(token.as_str()), "no scheme"),
    ] {
        let got = call(&app, "/whoami", auth).await;
        assert_problem(&got, "missing_token", "Bearer", what);
    }

    let mut expired = claims(sid);
    expired["iat"] = json!(iat - 2000);
    expired["nbf"] = json!(iat - 2000);
    expired["exp"] = json!(iat - 1100);
    let mut refresh_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    refresh_header.typ = Some("rt+jwt".into());
    refresh_header.kid = Some(key.kid.clone());
    let refresh = key.sign_with(refresh_header, &claims(sid));
    let forged = Keypair {
        kid: key.kid.clone(),
        ..Keypair::generate()
    }
    .token(sid);
    for (bad, what) in [
        ("garbage".to_owned(), "garbage"),
        (key.sign(&expired), "expired"),
        (refresh, "refresh token"),
        (forged, "forged"),
    ] {
        let got = call(&app, "/whoami", Some(&format!("Bearer {bad}"))).await;
        assert_problem(
            &got,
            "invalid_token",
            r#"Bearer error="invalid_token""#,
            what,
        );
    }

    // Revoked (logout): the same answer, as soon as the feed says so.
    gh.revoke(sid, iat + 1);
    eventually(std::time::Duration::from_secs(2), "revoked", async || {
        verifier.verify(&token).await == Err(VerifyError::Revoked)
    })
    .await;
    let got = call(&app, "/whoami", Some(&format!("Bearer {token}"))).await;
    assert_problem(
        &got,
        "invalid_token",
        r#"Bearer error="invalid_token""#,
        "revoked",
    );
}

#[tokio::test]
async fn custom_claims_and_optional_extractors() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let app = app(gh.verifier().await);
    let mut c = claims(Uuid::new_v4());
    c["client_id"] = json!("botfactory");
    let auth = format!("Bearer {}", key.sign(&c));

    let got = call(&app, "/caller", Some(&auth)).await;
    assert_eq!(got.0, StatusCode::OK);
    assert_eq!(got.2, json!({"sub": c["sub"], "client_id": "botfactory"}));

    for path in ["/maybe", "/opt"] {
        // No header: anonymous.
        let got = call(&app, path, None).await;
        assert_eq!(
            (got.0, &got.2),
            (StatusCode::OK, &json!({"sub": null})),
            "{path}"
        );
        // A good token: the caller.
        let got = call(&app, path, Some(&auth)).await;
        assert_eq!(
            (got.0, &got.2),
            (StatusCode::OK, &json!({"sub": c["sub"]})),
            "{path}"
        );
        // A bad one is still refused, not silently anonymous.
        let got = call(&app, path, Some("Bearer x.y.z")).await;
        assert_problem(
            &got,
            "invalid_token",
            r#"Bearer error="invalid_token""#,
            path,
        );
        let got = call(&app, path, Some("Basic abc")).await;
        assert_problem(&got, "missing_token", "Bearer", path);
    }
}

#[tokio::test]
async fn verify_bearer_works_on_plain_headers() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = gh.verifier().await;
    let sid = Uuid::new_v4();
    let mut headers = HeaderMap::new();
    assert_eq!(
        verifier.verify_bearer(&headers).await,
        Err(AuthError::MissingToken)
    );
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("bearer {}", key.token(sid))).unwrap(),
    );
    assert_eq!(verifier.verify_bearer(&headers).await.unwrap().sid, sid);
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer a.b.c"),
    );
    assert_eq!(
        verifier.verify_bearer(&headers).await,
        Err(AuthError::InvalidToken(VerifyError::Malformed))
    );
}
