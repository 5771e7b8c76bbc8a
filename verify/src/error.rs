//! Why a token was refused, and why a verifier could not start.

/// Why [`Verifier::verify`](crate::Verifier::verify) refused a token.
///
/// Every variant means the same to a client (401 `invalid_token`); the
/// variants exist for logs and metrics ([`VerifyError::reason`]). Do not
/// send the reason to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a compact JWS, or its header or claims are not readable JSON.
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm other than `EdDSA` (`HS256`, `none`, ...).
    #[error("algorithm not accepted")]
    UnsupportedAlgorithm,
    /// The header's `typ` is not `at+jwt` (e.g. a refresh token, `rt+jwt`).
    #[error("not an access token")]
    WrongType,
    /// The header has no `kid`.
    #[error("token names no key")]
    MissingKeyId,
    /// No published key has this `kid`, even after refetching the JWKS
    /// (or a refetch was not allowed yet).
    #[error("unknown signing key")]
    UnknownKey,
    /// The header's `alg` does not match the published key's `alg`/`kty`/`crv`.
    #[error("algorithm does not match the key")]
    AlgorithmMismatch,
    /// The signature does not verify with the published key.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is missing or of the wrong type.
    #[error("invalid claims")]
    InvalidClaims,
    /// `exp - iat` exceeds the configured maximum token lifetime.
    #[error("token lifetime too long")]
    LifetimeTooLong,
    /// The session was revoked, or the token is stale (`iat` before the
    /// session's `not_before`: logout, password change, role change, ...).
    #[error("token revoked")]
    Revoked,
}

impl VerifyError {
    /// A stable snake_case name, for logs and metric labels.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::WrongType => "wrong_type",
            Self::MissingKeyId => "missing_kid",
            Self::UnknownKey => "unknown_key",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::InvalidClaims => "invalid_claims",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::Revoked => "revoked",
        }
    }
}

/// Why [`Verifier::start`](crate::Verifier::start) failed: the first JWKS or
/// feed fetch did not succeed, so the verifier could not yet trust anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is unusable (e.g. the Redis URL does not parse).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    HttpClient(String),
    /// The request failed (connection, timeout) or answered a non-2xx status.
    #[error("fetching {url}: {detail}")]
    Fetch {
        /// The URL requested.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The answer was not the contract's JSON.
    #[error("unexpected answer from {url}: {detail}")]
    Invalid {
        /// The URL requested.
        url: String,
        /// What was wrong with it.
        detail: String,
    },
}

/// A failed request to Gatehouse, before it is known whether it matters.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// Connection, timeout or a non-2xx status.
    Transport(String),
    /// The answer was not the contract's JSON.
    Invalid(String),
}

impl FetchError {
    pub(crate) fn at(self, url: &str) -> StartError {
        let url = url.to_owned();
        match self {
            Self::Transport(detail) => StartError::Fetch { url, detail },
            Self::Invalid(detail) => StartError::Invalid { url, detail },
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(d) | Self::Invalid(d) => f.write_str(d),
        }
    }
}

impl From<reqwest::Error> for FetchError {
    fn from(e: reqwest::Error) -> Self {
        // Without the URL: it is reported next to the error anyway.
        Self::Transport(e.without_url().to_string())
    }
}
