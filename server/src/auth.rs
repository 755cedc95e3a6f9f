//! Bearer-token authorization with two roles, as the reference: the admin token may do
//! everything, the evaluate token only `POST /bundles/{id}/evaluate`.
//!
//! Tokens come from `POLICY_ENGINE_ADMIN_TOKEN` and `POLICY_ENGINE_EVALUATE_TOKEN`: 32 to 256
//! visible ASCII characters each, different from each other. Anything else fails closed: every
//! protected route answers 503 until the operator fixes the configuration. Tokens are compared
//! in constant time (`subtle`); only their lengths can leak, as with Python's `compare_digest`.

use crate::error::ApiError;
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// The environment variables the tokens are read from (the reference's names).
pub const ADMIN_TOKEN_ENV: &str = "POLICY_ENGINE_ADMIN_TOKEN";
pub const EVALUATE_TOKEN_ENV: &str = "POLICY_ENGINE_EVALUATE_TOKEN";

/// What a protected route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Evaluator,
}

/// Who made an authorized request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Evaluator,
    /// Authorization is switched off (`--insecure-no-auth`).
    Anyone,
}

impl Caller {
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Admin => "admin",
            Caller::Evaluator => "evaluator",
            Caller::Anyone => "unauthenticated",
        }
    }
}

/// Why the tokens are unusable (every protected route then answers 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProblem {
    /// Nothing was configured (the default of an in-process server).
    Unconfigured,
    /// One of the two variables is missing or empty.
    Missing,
    /// A token is not 32 to 256 visible ASCII characters.
    Invalid,
    /// Both variables hold the same token.
    Same,
}

impl std::fmt::Display for AuthProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthProblem::Unconfigured => write!(f, "no tokens configured"),
            AuthProblem::Missing => write!(f, "{ADMIN_TOKEN_ENV} and {EVALUATE_TOKEN_ENV} must both be set"),
            AuthProblem::Invalid => {
                write!(f, "{ADMIN_TOKEN_ENV} and {EVALUATE_TOKEN_ENV} must be 32 to 256 visible ASCII characters")
            }
            AuthProblem::Same => write!(f, "{ADMIN_TOKEN_ENV} and {EVALUATE_TOKEN_ENV} must differ"),
        }
    }
}

impl std::error::Error for AuthProblem {}

/// The service's authorization configuration.
#[derive(Clone)]
pub enum Auth {
    Tokens {
        admin: String,
        evaluator: String,
    },
    /// Tokens missing or invalid: protected routes answer 503. The reason is logged at start.
    Misconfigured(AuthProblem),
    /// No authorization at all (local use only).
    Disabled,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens.
        f.write_str(self.mode())
    }
}

fn valid_token(t: &str) -> bool {
    (32..=256).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic())
}

impl Auth {
    /// Checks two configured tokens; any problem is a misconfiguration (fail closed).
    pub fn from_tokens(admin: Option<String>, evaluator: Option<String>) -> Auth {
        let (Some(admin), Some(evaluator)) = (admin, evaluator) else {
            return Auth::Misconfigured(AuthProblem::Missing);
        };
        if !valid_token(&admin) || !valid_token(&evaluator) {
            return Auth::Misconfigured(AuthProblem::Invalid);
        }
        if bool::from(admin.as_bytes().ct_eq(evaluator.as_bytes())) {
            return Auth::Misconfigured(AuthProblem::Same);
        }
        Auth::Tokens { admin, evaluator }
    }

    /// Reads the tokens from the environment.
    pub fn from_env() -> Auth {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Auth::from_tokens(get(ADMIN_TOKEN_ENV), get(EVALUATE_TOKEN_ENV))
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Auth::Tokens { .. } => "bearer-tokens",
            Auth::Misconfigured(_) => "misconfigured",
            Auth::Disabled => "disabled",
        }
    }

    /// Authorizes a request for a role: 503 when unconfigured, 401 without a bearer token,
    /// 403 with a token that does not grant the role.
    pub fn check(&self, headers: &HeaderMap, role: Role) -> Result<Caller, ApiError> {
        let (admin, evaluator) = match self {
            Auth::Disabled => return Ok(Caller::Anyone),
            Auth::Misconfigured(_) => {
                return Err(ApiError::new(503, "policy engine API credentials are not configured"));
            }
            Auth::Tokens { admin, evaluator } => (admin, evaluator),
        };
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized());
        };
        let bytes = value.as_bytes();
        let Some(space) = bytes.iter().position(|b| *b == b' ') else {
            return Err(ApiError::unauthorized());
        };
        let (scheme, token) = (bytes.get(..space).unwrap_or_default(), bytes.get(space + 1..).unwrap_or_default());
        if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() {
            return Err(ApiError::unauthorized());
        }
        let forbidden = || ApiError::new(403, "token is not authorized for this operation");
        if token.len() > 256 || !token.is_ascii() {
            return Err(forbidden());
        }
        let is_admin = bool::from(token.ct_eq(admin.as_bytes()));
        let is_evaluator = bool::from(token.ct_eq(evaluator.as_bytes()));
        match (role, is_admin, is_evaluator) {
            (_, true, _) => Ok(Caller::Admin),
            (Role::Evaluator, _, true) => Ok(Caller::Evaluator),
            _ => Err(forbidden()),
        }
    }
}
