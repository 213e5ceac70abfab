//! Server side of one SCRAM-SHA-256 login (RFC 5802 / RFC 7677), as PostgreSQL runs it.
//!
//! Pure logic: the caller moves the SASL payloads between the wire and [`ScramExchange`].
//! We advertise only `SCRAM-SHA-256` (no `-PLUS`), so clients must not use channel binding.

use std::mem;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::secret::{hmac_sha256, ScramSecret, DEFAULT_ITERATIONS, KEY_LEN};

/// The SASL mechanism name to advertise in AuthenticationSASL and expect in
/// SASLInitialResponse.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// Random bytes in the server's half of the nonce (PostgreSQL uses 18).
const SERVER_NONCE_LEN: usize = 18;
/// Salt length of the fake verifier used for unknown users.
const MOCK_SALT_LEN: usize = 16;

/// Why a SCRAM step failed. The distinction matters to the client: a wrong password is
/// `28P01`, a broken message is a protocol violation (`08P01`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The proof does not match the verifier: wrong password (or unknown user).
    #[error("password authentication failed")]
    InvalidProof,
    /// The client's message violates the SCRAM grammar or uses an unsupported feature.
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    /// A step was called when the exchange was not waiting for it (including after it ended).
    #[error("SCRAM message received out of order")]
    OutOfOrder,
}

impl ScramError {
    /// SQLSTATE for the ErrorResponse sent to the client.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ScramError::InvalidProof => "28P01",
            ScramError::Malformed(_) | ScramError::OutOfOrder => "08P01",
        }
    }
}

fn malformed(reason: &str) -> ScramError {
    ScramError::Malformed(reason.to_string())
}

/// What the server remembers between server-first and client-final.
#[derive(Debug)]
struct Pending {
    gs2_header: Vec<u8>,
    client_first_bare: Vec<u8>,
    server_first: Vec<u8>,
    nonce: Vec<u8>,
}

#[derive(Debug)]
enum Step {
    AwaitClientFirst,
    AwaitClientFinal(Pending),
    Finished,
}

/// One SCRAM-SHA-256 login in progress: `client_first`, then `client_final`, each exactly once.
///
/// Any error ends the exchange; later calls return [`ScramError::OutOfOrder`].
#[derive(Debug)]
pub struct ScramExchange {
    secret: ScramSecret,
    server_nonce: String,
    mock: bool,
    step: Step,
}

impl ScramExchange {
    /// Starts a login against `secret` with a fresh random server nonce.
    pub fn new(secret: &ScramSecret) -> Self {
        Self::with_server_nonce(secret.clone(), random_nonce(), false)
    }

    /// Starts a login for a user that does not exist, without revealing that: the salt is a
    /// deterministic function of `(server_secret_seed, user)` so repeated probes see a stable
    /// salt, the iteration count is the default, the messages are validated like a real login,
    /// and `client_final` always ends in [`ScramError::InvalidProof`].
    /// `server_secret_seed` should be random per server process (or per deployment).
    pub fn new_mock(user: &str, server_secret_seed: &[u8]) -> Self {
        let digest = hmac_sha256(server_secret_seed, &[b"pgferry mock salt", user.as_bytes()]);
        let secret = ScramSecret {
            iterations: DEFAULT_ITERATIONS,
            salt: digest.iter().take(MOCK_SALT_LEN).copied().collect(),
            stored_key: rand::random(),
            server_key: rand::random(),
        };
        Self::with_server_nonce(secret, random_nonce(), true)
    }

    fn with_server_nonce(secret: ScramSecret, server_nonce: String, mock: bool) -> Self {
        ScramExchange {
            secret,
            server_nonce,
            mock,
            step: Step::AwaitClientFirst,
        }
    }

    /// Consumes the client-first-message (the SASLInitialResponse payload) and returns the
    /// server-first-message to send in AuthenticationSASLContinue.
    pub fn client_first(&mut self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(
            mem::replace(&mut self.step, Step::Finished),
            Step::AwaitClientFirst
        ) {
            return Err(ScramError::OutOfOrder);
        }
        let first = parse_client_first(message)?;
        let mut nonce = first.nonce.to_vec();
        nonce.extend_from_slice(self.server_nonce.as_bytes());
        let mut server_first = b"r=".to_vec();
        server_first.extend_from_slice(&nonce);
        let params = format!(
            ",s={},i={}",
            STANDARD.encode(&self.secret.salt),
            self.secret.iterations
        );
        server_first.extend_from_slice(params.as_bytes());
        self.step = Step::AwaitClientFinal(Pending {
            gs2_header: first.gs2_header.to_vec(),
            client_first_bare: first.bare.to_vec(),
            server_first: server_first.clone(),
            nonce,
        });
        Ok(server_first)
    }

    /// Length of the shortest valid client-final-message of this exchange: the GS2 header
    /// echoed as `c=`, the nonce as `r=`, a proof of [`KEY_LEN`] bytes as `p=`, no extensions
    /// (what clients send). A read of this many bytes takes such a message whole and never
    /// anything the client sends after it. `None` unless client-first was accepted.
    pub fn client_final_len(&self) -> Option<usize> {
        let Step::AwaitClientFinal(pending) = &self.step else {
            return None;
        };
        let base64_len = |n: usize| n.div_ceil(3) * 4;
        let echoed = base64_len(pending.gs2_header.len()) + pending.nonce.len();
        Some("c=,r=,p=".len() + echoed + base64_len(KEY_LEN))
    }

    /// Consumes the client-final-message (SASLResponse payload), verifies the proof and, on
    /// success, returns the server-final-message for AuthenticationSASLFinal.
    pub fn client_final(&mut self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let pending = match mem::replace(&mut self.step, Step::Finished) {
            Step::AwaitClientFinal(pending) => pending,
            _ => return Err(ScramError::OutOfOrder),
        };
        let fin = parse_client_final(message)?;
        check_echo(&pending, &fin)?;
        let proof: [u8; KEY_LEN] = STANDARD
            .decode(fin.proof)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| malformed("client proof is not 32 bytes of base64"))?;
        let auth_message = [
            pending.client_first_bare.as_slice(),
            b",",
            &pending.server_first,
            b",",
            fin.without_proof,
        ]
        .concat();
        match self.secret.verify_proof(&auth_message, &proof) {
            Some(signature) if !self.mock => {
                Ok(format!("v={}", STANDARD.encode(signature)).into_bytes())
            }
            _ => Err(ScramError::InvalidProof),
        }
    }
}

/// The client must echo the GS2 header (as `c=`) and the combined nonce (as `r=`).
fn check_echo(pending: &Pending, fin: &ClientFinal<'_>) -> Result<(), ScramError> {
    let binding = STANDARD
        .decode(fin.channel_binding)
        .map_err(|_| malformed("channel binding attribute is not valid base64"))?;
    if binding != pending.gs2_header {
        return Err(malformed(
            "channel binding data does not match the GS2 header",
        ));
    }
    if fin.nonce != pending.nonce.as_slice() {
        return Err(malformed("unexpected SCRAM nonce"));
    }
    Ok(())
}

fn random_nonce() -> String {
    let bytes: [u8; SERVER_NONCE_LEN] = rand::random();
    STANDARD.encode(bytes)
}

/// The parts of a client-first-message the server uses.
struct ClientFirst<'a> {
    gs2_header: &'a [u8],
    bare: &'a [u8],
    nonce: &'a [u8],
}

/// `gs2-header client-first-message-bare`, restricted to what PostgreSQL accepts without
/// channel binding: flag `n` or `y`, no authzid, no mandatory extension.
fn parse_client_first(message: &[u8]) -> Result<ClientFirst<'_>, ScramError> {
    let (flag, rest) = split_field(message).ok_or_else(|| malformed("missing GS2 header"))?;
    match flag {
        b"n" | b"y" => {}
        _ if flag.starts_with(b"p=") => {
            return Err(malformed(
                "client requires channel binding (SCRAM-SHA-256-PLUS), which is not offered",
            ))
        }
        _ => return Err(malformed("invalid channel binding flag")),
    }
    let (authzid, bare) = split_field(rest).ok_or_else(|| malformed("missing GS2 header"))?;
    if !authzid.is_empty() {
        return Err(malformed("authorization identity (a=) is not supported"));
    }
    let gs2_header = message
        .get(..message.len() - bare.len())
        .ok_or_else(|| malformed("missing GS2 header"))?;
    let mut fields = bare.split(|&b| b == b',');
    let user = fields.next().unwrap_or_default();
    if user.starts_with(b"m=") {
        return Err(malformed("unsupported mandatory SCRAM extension (m=)"));
    }
    attribute(Some(user), b'n', "username")?;
    let nonce = attribute(fields.next(), b'r', "nonce")?;
    if nonce.is_empty() || !nonce.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(malformed("nonce must be non-empty printable ASCII"));
    }
    fields.try_for_each(extension)?;
    Ok(ClientFirst {
        gs2_header,
        bare,
        nonce,
    })
}

/// The parts of a client-final-message the server uses.
struct ClientFinal<'a> {
    without_proof: &'a [u8],
    channel_binding: &'a [u8],
    nonce: &'a [u8],
    proof: &'a [u8],
}

/// `c=<cbind>,r=<nonce>[,ext...],p=<proof>`; the proof must be the last attribute.
fn parse_client_final(message: &[u8]) -> Result<ClientFinal<'_>, ScramError> {
    let comma = message
        .iter()
        .rposition(|&b| b == b',')
        .ok_or_else(|| malformed("missing client proof"))?;
    let (without_proof, proof_field) = message.split_at(comma);
    let proof = proof_field
        .strip_prefix(b",p=")
        .ok_or_else(|| malformed("client proof (p=) must be the last attribute"))?;
    let mut fields = without_proof.split(|&b| b == b',');
    let channel_binding = attribute(fields.next(), b'c', "channel binding")?;
    let nonce = attribute(fields.next(), b'r', "nonce")?;
    fields.try_for_each(extension)?;
    Ok(ClientFinal {
        without_proof,
        channel_binding,
        nonce,
        proof,
    })
}

/// Splits at the first comma: `(before, after)`.
fn split_field(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let comma = input.iter().position(|&b| b == b',')?;
    let (head, tail) = input.split_at(comma);
    Some((head, tail.get(1..).unwrap_or_default()))
}

/// Returns the value of `name=value`, or a Malformed error naming the expected attribute.
fn attribute<'a>(field: Option<&'a [u8]>, name: u8, what: &str) -> Result<&'a [u8], ScramError> {
    match field {
        Some([n, b'=', value @ ..]) if *n == name => Ok(value),
        _ => Err(ScramError::Malformed(format!(
            "expected {what} attribute ({}=)",
            char::from(name)
        ))),
    }
}

/// Optional extensions after the known attributes are ignored, but must be well-formed.
fn extension(field: &[u8]) -> Result<(), ScramError> {
    match field {
        [n, b'=', ..] if n.is_ascii_alphabetic() => Ok(()),
        _ => Err(malformed("invalid attribute")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn secret(password: &str) -> ScramSecret {
        ScramSecret::from_password_with_salt(password, b"0123456789abcdef", 64)
    }

    #[test]
    fn rfc7677_example() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let secret = ScramSecret::from_password_with_salt("pencil", &salt, 4096);
        let nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_string();
        let mut server = ScramExchange::with_server_nonce(secret, nonce, false);
        let first = server
            .client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .unwrap();
        let expected_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(first, expected_first.as_bytes());
        let fin = server.client_final(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        );
        assert_eq!(
            fin.unwrap(),
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn mock_is_stable_and_always_fails() {
        let salt_of = |user: &str, seed: &[u8]| {
            let mut ex = ScramExchange::new_mock(user, seed);
            let first = ex.client_first(b"n,,n=,r=abc").unwrap();
            let text = String::from_utf8(first).unwrap();
            text.split(',').nth(1).unwrap().to_string()
        };
        assert_eq!(salt_of("ghost", b"seed"), salt_of("ghost", b"seed"));
        assert_ne!(salt_of("ghost", b"seed"), salt_of("ghost2", b"seed"));
        assert_ne!(salt_of("ghost", b"seed"), salt_of("ghost", b"other"));
        let mut client = ScramSha256::new(b"anything", ChannelBinding::unrequested());
        let mut ex = ScramExchange::new_mock("ghost", b"seed");
        let first = ex.client_first(client.message()).unwrap();
        assert!(String::from_utf8_lossy(&first).ends_with(",i=4096"));
        client.update(&first).unwrap();
        assert_eq!(
            ex.client_final(client.message()),
            Err(ScramError::InvalidProof)
        );
    }

    #[test]
    fn malformed_client_first() {
        let cases: [&[u8]; 14] = [
            b"",
            b"n",
            b"n,",
            b"p=tls-server-end-point,,n=,r=abc",
            b"x,,n=,r=abc",
            b"n,a=admin,n=,r=abc",
            b"n,,m=ext,n=,r=abc",
            b"n,,r=abc",
            b"n,,n=",
            b"n,,n=,r=",
            b"n,,n=,r=a\x01b",
            b"n,,n=,r=ab\xffc",
            b"n,,n=,r=abc,bogus",
            b"n,,n=,x=abc",
        ];
        for case in cases {
            let mut ex = ScramExchange::new(&secret("pw"));
            let result = ex.client_first(case);
            assert!(
                matches!(result, Err(ScramError::Malformed(_))),
                "{case:?}: {result:?}"
            );
            assert_eq!(
                ex.client_final(b"c=biws,r=x,p=x"),
                Err(ScramError::OutOfOrder)
            );
        }
        let mut ex = ScramExchange::new(&secret("pw"));
        assert!(ex.client_first(b"n,,n=someone,r=abc,e=ignored").is_ok());
    }

    /// Returns an exchange after server-first plus the correct client-final text (sans proof).
    fn after_first() -> (ScramExchange, String) {
        let mut ex = ScramExchange::new(&secret("pw"));
        let first = ex.client_first(b"n,,n=,r=abc").unwrap();
        let text = String::from_utf8(first).unwrap();
        let nonce = text.split(',').next().unwrap().to_string();
        (ex, format!("c=biws,{nonce}"))
    }

    /// The read of client-final relies on this being exactly what a client sends, and on
    /// nothing shorter being valid.
    #[test]
    fn client_final_len_is_the_standard_message_length() {
        let proof = STANDARD.encode([0u8; 32]);
        let (mut ex, good) = after_first();
        let message = format!("{good},p={proof}");
        assert_eq!(ex.client_final_len(), Some(message.len()));
        assert_eq!(
            ex.client_final(&message.as_bytes()[..message.len() - 1]),
            Err(malformed("client proof is not 32 bytes of base64"))
        );
        assert_eq!(ex.client_final_len(), None);
    }

    #[test]
    fn malformed_client_final() {
        let proof = STANDARD.encode([0u8; 32]);
        let (_, good) = after_first();
        let cases = [
            String::new(),
            "garbage".to_string(),
            good.clone(),
            format!("{good},p="),
            format!("{good},p=!!!"),
            format!("{good},p={}", STANDARD.encode([0u8; 31])),
            format!("{good},p={proof},x=after"),
            format!("c=eSws,{},p={proof}", &good[7..]),
            format!("c=*,{},p={proof}", &good[7..]),
            format!("c=biws,r=abcWRONG,p={proof}"),
            format!("r=abc,c=biws,p={proof}"),
            format!("{good},bad,p={proof}"),
        ];
        for case in cases {
            let (mut ex, _) = after_first();
            let result = ex.client_final(case.as_bytes());
            assert!(
                matches!(result, Err(ScramError::Malformed(_))),
                "{case}: {result:?}"
            );
            assert_eq!(result.unwrap_err().sqlstate(), "08P01");
        }
        let (mut ex, good) = after_first();
        let wrong_proof = format!("{good},e=ext,p={proof}");
        assert_eq!(
            ex.client_final(wrong_proof.as_bytes()),
            Err(ScramError::InvalidProof)
        );
    }

    #[test]
    fn truncated_and_corrupted_messages_never_panic() {
        let mut client = ScramSha256::new(b"pw", ChannelBinding::unrequested());
        let mut ex = ScramExchange::new(&secret("pw"));
        let first_msg = client.message().to_vec();
        let server_first = ex.client_first(&first_msg).unwrap();
        client.update(&server_first).unwrap();
        let final_msg = client.message().to_vec();
        for cut in 0..first_msg.len() {
            let _ = ScramExchange::new(&secret("pw")).client_first(&first_msg[..cut]);
        }
        for cut in 0..final_msg.len() {
            let (mut ex, _) = after_first();
            assert!(ex.client_final(&final_msg[..cut]).is_err());
            let mut corrupted = final_msg.clone();
            corrupted[cut] ^= 0x55;
            let (mut ex, _) = after_first();
            assert!(ex.client_final(&corrupted).is_err());
        }
    }

    #[test]
    fn steps_out_of_order() {
        let mut ex = ScramExchange::new(&secret("pw"));
        assert_eq!(
            ex.client_final(b"c=biws,r=x,p=x"),
            Err(ScramError::OutOfOrder)
        );
        assert_eq!(ex.client_first(b"n,,n=,r=abc"), Err(ScramError::OutOfOrder));
        let mut ex = ScramExchange::new(&secret("pw"));
        ex.client_first(b"n,,n=,r=abc").unwrap();
        assert_eq!(ex.client_first(b"n,,n=,r=abc"), Err(ScramError::OutOfOrder));
        let mut client = ScramSha256::new(b"pw", ChannelBinding::unrequested());
        let mut ex = ScramExchange::new(&secret("pw"));
        client
            .update(&ex.client_first(client.message()).unwrap())
            .unwrap();
        ex.client_final(client.message()).unwrap();
        assert_eq!(
            ex.client_final(client.message()),
            Err(ScramError::OutOfOrder)
        );
    }
}
