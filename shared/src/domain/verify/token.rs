//! The token scheme: a shared secret in the callback URL (`?token=…`). Several tokens
//! may be configured at once, so one can be rotated without refusing callbacks.

use super::{Rejection, any_match, ct_eq_choice};
use crate::domain::secret::Secret;

/// Accepts the one `provided` token if it equals any of `tokens`; every token is
/// compared, in constant time, without stopping early. Two tokens are ambiguous.
pub(super) fn check(tokens: &[Secret], provided: &[&str]) -> Result<(), Rejection> {
    let provided = match provided {
        [] => return Err(Rejection::Missing),
        [one] => *one,
        _ => return Err(Rejection::Duplicated),
    };
    if provided.is_empty() {
        return Err(Rejection::Missing);
    }
    any_match(
        tokens
            .iter()
            .map(|t| ct_eq_choice(t.expose(), provided.as_bytes())),
    )
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::super::fixtures::*;
    use super::super::{Scheme, Verified};
    use super::*;

    #[test]
    fn token_good_and_rotated() {
        let h = HeaderMap::new();
        let v = token_verifier();
        assert_eq!(
            v.verify(&req(Some(TOKEN), &h, BODY), now()),
            Ok(Verified::By(Scheme::Token))
        );
        assert_eq!(
            v.verify(&req(Some("old-token-0123456789"), &h, BODY), now()),
            Ok(Verified::By(Scheme::Token))
        );
    }

    #[test]
    fn token_bad_missing_and_wrong_length() {
        let h = HeaderMap::new();
        let v = token_verifier();
        let mismatch = vec![(Scheme::Token, Rejection::Mismatch)];
        assert_eq!(
            reasons(v.verify(&req(Some("tok-0123456789abcdeX"), &h, BODY), now())),
            mismatch
        );
        // A prefix or an extension of a valid token is not a match.
        assert_eq!(
            reasons(v.verify(&req(Some("tok-0123456789abcde"), &h, BODY), now())),
            mismatch
        );
        assert_eq!(
            reasons(v.verify(&req(Some(&format!("{TOKEN}x")), &h, BODY), now())),
            mismatch
        );
        assert_eq!(
            reasons(v.verify(&req(None, &h, BODY), now())),
            vec![(Scheme::Token, Rejection::Missing)]
        );
        assert_eq!(
            reasons(v.verify(&req(Some(""), &h, BODY), now())),
            vec![(Scheme::Token, Rejection::Missing)]
        );
    }
}
