//! What a verifier holding no secret accepts and refuses.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_verify::{Config, StartError, Verifier, VerifyError};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use uuid::Uuid;

use crate::support::{FakeGatehouse, Keypair, claims, now, raw_token};

/// An HS256 access token, as Gatehouse in HS256 mode (or a forger) makes it.
fn hs256(secret: &[u8], kid: &str, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test]
async fn a_valid_token_is_accepted_with_its_claims() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = gh.verifier().await;
    let sid = Uuid::new_v4();
    let mut c = claims(sid);
    c["role"] = json!("admin");
    c["client_id"] = json!("botfactory");
    c["scope"] = json!("bots");
    let token = key.sign(&c);

    let got = verifier.verify(&token).await.unwrap();
    assert_eq!(got.sid, sid);
    assert_eq!(got.sub.to_string(), c["sub"].as_str().unwrap());
    assert_eq!(got.jti.to_string(), c["jti"].as_str().unwrap());
    assert_eq!(
        (got.iss.as_str(), got.aud.as_str()),
        ("gatehouse", "gatehouse")
    );
    assert_eq!(got.role, "admin");
    assert!(got.is_admin());
    assert_eq!(
        (got.iat, got.nbf, got.exp),
        (
            c["iat"].as_i64().unwrap(),
            c["nbf"].as_i64().unwrap(),
            c["exp"].as_i64().unwrap()
        )
    );
    assert_eq!(got.client_id(), Some("botfactory"));
    assert_eq!(got.extra_claim::<String>("scope").as_deref(), Some("bots"));
    // The start fetched the JWKS once; verifying needed no more.
    assert_eq!(gh.jwks_requests(), 1);
    let status = verifier.status();
    assert_eq!(status.jwks_keys, 1);
    assert!(status.ready);
}

#[tokio::test]
async fn forged_and_tampered_signatures_are_refused() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = gh.verifier().await;

    // Signed by someone else's key under our published kid.
    let mut forger = Keypair::generate();
    forger.kid = key.kid.clone();
    let forged = forger.token(Uuid::new_v4());
    assert_eq!(
        verifier.verify(&forged).await,
        Err(VerifyError::BadSignature)
    );

    // A real token whose payload was edited (user -> admin).
    let token = key.token(Uuid::new_v4());
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["role"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    assert_eq!(
        verifier.verify(&tampered).await,
        Err(VerifyError::BadSignature)
    );

    // A truncated signature, and garbage.
    let truncated = &token[..token.len() - 4];
    assert!(verifier.verify(truncated).await.is_err());
    for junk in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "...",
        "!!.!!.!!",
        &"a".repeat(20_000),
    ] {
        assert_eq!(
            verifier.verify(junk).await,
            Err(VerifyError::Malformed),
            "{junk:.20}"
        );
    }
    // The original still passes.
    assert!(verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn symmetric_and_none_algorithms_are_refused() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = gh.verifier().await;
    let c = claims(Uuid::new_v4());

    // An HS256 token (Gatehouse in HS256 mode, or anyone with a secret).
    let hs = hs256(b"a-secret-of-at-least-thirty-two-bytes!!", &key.kid, &c);
    assert_eq!(
        verifier.verify(&hs).await,
        Err(VerifyError::UnsupportedAlgorithm)
    );

    // Key confusion: HS256 keyed with the published public key bytes.
    let confused = hs256(&key.public, &key.kid, &c);
    assert_eq!(
        verifier.verify(&confused).await,
        Err(VerifyError::UnsupportedAlgorithm)
    );
    let x = URL_SAFE_NO_PAD.encode(key.public);
    let confused_b64 = hs256(x.as_bytes(), &key.kid, &c);
    assert_eq!(
        verifier.verify(&confused_b64).await,
        Err(VerifyError::UnsupportedAlgorithm)
    );

    // `none`, with and without a signature, in any spelling.
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": key.kid});
        for sig in [&b""[..], b"sig"] {
            let t = raw_token(&header, &c, sig);
            assert_eq!(
                verifier.verify(&t).await,
                Err(VerifyError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }
    // No JWKS refetch was spent on any of them.
    assert_eq!(gh.jwks_requests(), 1);
}

#[tokio::test]
async fn an_alg_header_lying_about_the_key_is_refused() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = gh.verifier().await;
    let c = claims(Uuid::new_v4());
    let real = key.token(Uuid::new_v4());
    let signature = URL_SAFE_NO_PAD
        .decode(real.rsplit('.').next().unwrap())
        .unwrap();

    // The EdDSA key's kid, with another algorithm claimed in the header.
    for alg in [
        "ES256",
        "RS256",
        "PS256",
        "HS512",
        "EdDSA\u{0}",
        "eddsa",
        "Ed25519",
    ] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": key.kid});
        let t = raw_token(&header, &c, &signature);
        assert!(verifier.verify(&t).await.is_err(), "{alg}");
    }

    // A JWKS entry that says EdDSA but whose kty/crv do not match, or with
    // a short x: never used (and never a panic).
    let odd = Keypair::generate();
    gh.set_keys(|keys| {
        let mut wrong_crv = odd.jwk();
        wrong_crv["crv"] = json!("X25519");
        keys.push(wrong_crv);
        let mut short = Keypair::generate().jwk();
        short["x"] = json!(URL_SAFE_NO_PAD.encode([7u8; 16]));
        short["kid"] = json!("short-x");
        keys.push(short);
        let mut hs_key =
            json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(b"secret"), "alg": "HS256"});
        hs_key["kid"] = json!("oct");
        keys.push(hs_key);
    });
    let t = odd.token(Uuid::new_v4());
    assert_eq!(verifier.verify(&t).await, Err(VerifyError::UnknownKey));
    let mut short_header = Header::new(Algorithm::EdDSA);
    short_header.typ = Some("at+jwt".into());
    short_header.kid = Some("short-x".into());
    let t = key.sign_with(short_header, &c);
    assert_eq!(verifier.verify(&t).await, Err(VerifyError::UnknownKey));
    let t = hs256(b"secret", "oct", &c);
    assert_eq!(
        verifier.verify(&t).await,
        Err(VerifyError::UnsupportedAlgorithm)
    );
    // The good key still works after that refetch.
    assert!(verifier.verify(&real).await.is_ok());
    assert_eq!(verifier.status().jwks_keys, 1);
}

#[tokio::test]
async fn only_access_tokens_are_accepted() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = gh.verifier().await;
    let c = claims(Uuid::new_v4());
    for typ in [
        Some("rt+jwt"),
        Some("JWT"),
        Some("AT+JWT"),
        Some("application/at+jwt"),
        Some(""),
        None,
    ] {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = typ.map(str::to_owned);
        header.kid = Some(key.kid.clone());
        let t = key.sign_with(header, &c);
        assert_eq!(
            verifier.verify(&t).await,
            Err(VerifyError::WrongType),
            "{typ:?}"
        );
    }
    // No kid at all.
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    assert_eq!(
        verifier.verify(&key.sign_with(header, &c)).await,
        Err(VerifyError::MissingKeyId)
    );
    // A critical header extension we cannot understand.
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid.clone());
    header.crit = Some(vec!["exp".into()]);
    assert_eq!(
        verifier.verify(&key.sign_with(header, &c)).await,
        Err(VerifyError::Malformed)
    );
}

#[tokio::test]
async fn issuer_audience_and_time_claims_are_checked() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = gh.verifier().await;
    let sid = Uuid::new_v4();
    let t = now();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims(sid);
        f(&mut c);
        key.sign(&c)
    };
    let cases: Vec<(&str, String, VerifyError)> = vec![
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("evil")),
            VerifyError::WrongIssuer,
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!("other-app")),
            VerifyError::WrongAudience,
        ),
        (
            "aud array",
            with(&|c| c["aud"] = json!(["gatehouse", "x"])),
            VerifyError::InvalidClaims,
        ),
        (
            "expired",
            with(&|c| {
                c["iat"] = json!(t - 1000);
                c["nbf"] = json!(t - 1000);
                c["exp"] = json!(t - 100);
            }),
            VerifyError::Expired,
        ),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(t + 120)),
            VerifyError::NotYetValid,
        ),
        (
            "iat in the future",
            with(&|c| c["iat"] = json!(t + 120)),
            VerifyError::NotYetValid,
        ),
        (
            "lifetime over the max",
            with(&|c| c["exp"] = json!(t + 2 * 3600)),
            VerifyError::LifetimeTooLong,
        ),
        (
            "no sid",
            with(&|c| drop(c.as_object_mut().unwrap().remove("sid"))),
            VerifyError::InvalidClaims,
        ),
        (
            "no nbf",
            with(&|c| drop(c.as_object_mut().unwrap().remove("nbf"))),
            VerifyError::InvalidClaims,
        ),
        (
            "no exp",
            with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
            VerifyError::InvalidClaims,
        ),
        (
            "no role",
            with(&|c| drop(c.as_object_mut().unwrap().remove("role"))),
            VerifyError::InvalidClaims,
        ),
        (
            "sub not a uuid",
            with(&|c| c["sub"] = json!("admin")),
            VerifyError::InvalidClaims,
        ),
        (
            "exp as string",
            with(&|c| c["exp"] = json!("9999999999")),
            VerifyError::InvalidClaims,
        ),
    ];
    for (what, token, want) in cases {
        assert_eq!(verifier.verify(&token).await, Err(want), "{what}");
    }
    // Within the leeway (5 s) a small clock skew is fine.
    let skewed = with(&|c| {
        c["nbf"] = json!(t + 3);
        c["iat"] = json!(t + 3);
    });
    assert!(verifier.verify(&skewed).await.is_ok());
}

#[tokio::test]
async fn another_issuer_and_audience_can_be_configured() {
    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    let verifier = Verifier::start(
        gh.config()
            .with_issuer("https://auth.example")
            .with_audience("chat"),
    )
    .await
    .unwrap();
    let mut c = claims(Uuid::new_v4());
    assert_eq!(
        verifier.verify(&key.sign(&c)).await,
        Err(VerifyError::WrongIssuer)
    );
    c["iss"] = json!("https://auth.example");
    assert_eq!(
        verifier.verify(&key.sign(&c)).await,
        Err(VerifyError::WrongAudience)
    );
    c["aud"] = json!("chat");
    assert!(verifier.verify(&key.sign(&c)).await.is_ok());
}

#[tokio::test]
async fn start_fails_when_gatehouse_is_unreachable_or_off_contract() {
    // Nobody listens there.
    let port = crate::support::free_port();
    let err = Verifier::start(Config::new(format!("http://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartError::Fetch { ref url, .. } if url.ends_with("/.well-known/jwks.json")),
        "{err}"
    );

    let key = Keypair::generate();
    let gh = FakeGatehouse::start(&[&key]).await;
    gh.set_feed_down(true);
    let err = Verifier::start(gh.config()).await.unwrap_err();
    assert!(
        matches!(err, StartError::Fetch { ref url, .. } if url.ends_with("/.well-known/revocations")),
        "{err}"
    );

    let err = Verifier::start(gh.config().with_redis("not a url", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::Config(_)), "{err}");
}
