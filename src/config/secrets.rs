//! Secret values an operator must not ship: the placeholders of examples and
//! templates, and values a guess would find. `auth.secret` keys every CSRF
//! token, code hash and sealed authenticator secret, so one copied from an
//! example (public) or one a dictionary finds lets anyone forge them. The
//! gateway refuses both at start-up, as `check-config` does, naming the key.

/// Words that mark a value as still to be filled in ("REPLACE: openssl rand
/// ...", "CHANGE_ME"). A random secret of 48 bytes contains one of them by
/// chance with a probability below one in ten million.
const PLACEHOLDER_WORDS: &[&str] = &["replace", "change"];

/// Whole values found in examples and tutorials (compared without case,
/// spaces, `-` or `_`).
const PLACEHOLDERS: &[&str] = &[
    "secret",
    "yoursecret",
    "yoursecrethere",
    "mysecret",
    "supersecret",
    "password",
    "example",
    "insecure",
    "default",
    "todo",
    "fixme",
    "test",
    "...",
];

/// The fewest guesses, as a power of ten, that `auth.secret` must take by
/// zxcvbn's estimate: 10^18, about 2^60. zxcvbn stops counting at 2^64
/// (every random secret of 32 characters or more reaches that), so this
/// catches what it recognises: repeats (`xxxx...`, `secret-secret-...`),
/// sequences (`0123...`, `abcd...`), keyboard walks and short words, which
/// stay below 2^57. A long phrase of words can still pass: the message and
/// the docs ask for random bytes.
pub const MIN_SECRET_GUESSES_LOG10: f64 = 18.0;

/// Why `value` reads as a placeholder, if it does. `anywhere`: a placeholder
/// word anywhere in the value counts (for keys, which are random); else only
/// at its start (a password may contain "exchange").
pub fn placeholder(value: &str, anywhere: bool) -> Option<String> {
    let lower = value.trim().to_ascii_lowercase();
    for word in PLACEHOLDER_WORDS {
        let found = if anywhere { lower.contains(word) } else { lower.starts_with(word) };
        if found {
            return Some(format!("is a placeholder (it contains {:?}), not a value of your own", word.to_uppercase()));
        }
    }
    let bare: String = lower.chars().filter(|c| !matches!(c, ' ' | '-' | '_' | '<' | '>')).collect();
    let filler = !bare.is_empty() && bare.chars().all(|c| matches!(c, 'x' | '.' | '*'));
    if filler || PLACEHOLDERS.contains(&bare.as_str()) {
        return Some(format!("is a placeholder ({:?}), not a value of your own", value.trim()));
    }
    None
}

/// zxcvbn's estimate of the guesses `value` takes, as a power of ten, when it
/// is below [`MIN_SECRET_GUESSES_LOG10`]. A value that is [`clearly_random`]
/// is not scored: zxcvbn's first estimate builds 4.7 MiB of dictionaries
/// that stay for the life of the process, and at start-up that is all it
/// would be used for.
pub fn guessable(value: &str) -> Option<f64> {
    if clearly_random(value) {
        return None;
    }
    let log10 = zxcvbn::zxcvbn(value, &[]).guesses_log10();
    (log10 < MIN_SECRET_GUESSES_LOG10).then_some(log10)
}

/// Bits a value must carry, by [`clearly_random`]'s count, to skip zxcvbn:
/// four times the 64 at which zxcvbn stops counting, so that only what
/// random generators make passes unscored (`openssl rand -base64 48` and
/// `portcullis init` about 410 bits, `openssl rand -hex 32` about 320),
/// and anything shorter or with structure is scored by zxcvbn as before.
const CLEARLY_RANDOM_BITS: f64 = 256.0;

/// True when `value` is long, drawn from a wide alphabet and without
/// structure: every character counts log2 of the alphabet its classes span
/// (lower case 26, upper case 26, digits 10, others 33), except one that
/// continues a run (`aaa`, `abc`, `cba`) or ends three characters seen
/// before, which counts nothing. Words count in full here, so a value of
/// words could pass; they cannot reach 256 bits in under about 40
/// characters, and zxcvbn too lets a long phrase of words pass. Only the
/// first 256 characters are looked at (the count is quadratic).
fn clearly_random(value: &str) -> bool {
    let chars: Vec<char> = value.chars().take(256).collect();
    type Class = (fn(&char) -> bool, f64);
    let classes: [Class; 4] = [
        (char::is_ascii_lowercase, 26.0),
        (char::is_ascii_uppercase, 26.0),
        (char::is_ascii_digit, 10.0),
        (|c| !c.is_ascii_alphanumeric(), 33.0),
    ];
    let alphabet: f64 = classes.iter().filter(|(class, _)| chars.iter().any(class)).map(|(_, n)| n).sum();
    let mut free = 0usize;
    for i in 0..chars.len() {
        let run = i >= 2 && {
            let (a, b, c) = (chars[i - 2] as i64, chars[i - 1] as i64, chars[i] as i64);
            c - b == b - a && (c - b).abs() <= 1
        };
        let seen = i >= 2 && (0..i - 2).any(|j| chars[j..j + 3] == chars[i - 2..=i]);
        free += usize::from(!run && !seen);
    }
    free as f64 * alphabet.log2() >= CLEARLY_RANDOM_BITS
}

/// Everything wrong with a key (`auth.secret`), as one message.
pub fn key_problem(value: &str) -> Option<String> {
    const HOW: &str = "generate one with `openssl rand -base64 48`";
    if let Some(why) = placeholder(value, true) {
        return Some(format!("{why}; {HOW}"));
    }
    guessable(value).map(|log10| {
        format!(
            "is too easy to guess (about 2^{:.0} guesses by a strength estimate; at least 2^{:.0} are needed: \
             repeats, sequences and words do not count as random); {HOW}",
            log10 * std::f64::consts::LOG2_10,
            MIN_SECRET_GUESSES_LOG10 * std::f64::consts::LOG2_10,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn the_placeholders_of_the_shipped_templates_are_refused() {
        for value in [
            "REPLACE: openssl rand -base64 48",
            "REPLACE",
            "replace-me-with-48-random-bytes-of-base64-0123456789",
            "CHANGE_ME",
            "changeme-changeme-changeme-changeme",
            "please-change-this-secret-before-production-use",
            "...",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "<secret>",
            "your-secret-here",
        ] {
            let why = key_problem(value).unwrap_or_else(|| panic!("{value:?} accepted"));
            assert!(why.contains("placeholder"), "{value:?}: {why}");
            assert!(why.contains("openssl rand"), "the message says how to make one: {why}");
        }
    }

    #[test]
    fn patterned_secrets_are_too_easy_to_guess() {
        for value in [
            "xyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxy",
            "0123456789abcdef0123456789abcdef",
            "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz",
            "bench-secret-bench-secret-bench-secret-0123",
            "Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3",
            "passwordpasswordpasswordpassword",
            "abababababababababababababababababababab",
        ] {
            let why = key_problem(value).unwrap_or_else(|| panic!("{value:?} accepted"));
            assert!(why.contains("too easy to guess"), "{value:?}: {why}");
        }
    }

    /// Fresh random secrets as `openssl rand -base64 48` (and `init`),
    /// `-hex 32` and `-hex 16` make them.
    fn usual_random_secrets() -> [String; 3] {
        let mut bytes = [0u8; 48];
        rand::fill(&mut bytes);
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect();
        [base64::engine::general_purpose::STANDARD.encode(bytes), hex(&bytes[..32]), hex(&bytes[32..])]
    }

    #[test]
    fn random_secrets_of_every_usual_shape_pass() {
        for _ in 0..40 {
            for value in usual_random_secrets() {
                assert_eq!(key_problem(&value), None, "{value:?}");
            }
        }
    }

    #[test]
    fn only_long_unstructured_values_skip_the_dictionary_estimate() {
        // What the docs and `init` make: no dictionaries are built for them.
        for _ in 0..40 {
            let [b64, hex32, hex16] = usual_random_secrets();
            assert!(clearly_random(&b64), "{b64:?}");
            assert!(clearly_random(&hex32), "{hex32:?}");
            // 128 bits in 32 characters: random, but scored by zxcvbn.
            assert!(!clearly_random(&hex16), "{hex16:?}");
        }
        // Patterned values go to zxcvbn (which refuses most of these) also
        // when they are long.
        for value in [
            "xyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxy",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "bench-secret-bench-secret-bench-secret-bench-secret-bench-secret-0123",
            "Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3",
            "passwordpasswordpasswordpasswordpasswordpasswordpasswordpassword",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "qwertyuiopasdfghjklzxcvbnm",
        ] {
            assert!(!clearly_random(value), "{value:?}");
        }
    }

    #[test]
    fn a_password_may_contain_a_placeholder_word_after_its_start() {
        assert_eq!(placeholder("Exchange-Relay-2024!", false), None);
        assert!(placeholder("REPLACE", false).is_some());
        assert!(placeholder("changeme", false).is_some());
    }
}
