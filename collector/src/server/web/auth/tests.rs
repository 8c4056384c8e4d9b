use super::*;
use crate::server::auth_limit::MAX_TRACKED;

fn header(user: &str, password: &str) -> String {
    // Encoded by hand so the test does not lean on the decoder it checks.
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{password}");
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

fn remote() -> IpAddr {
    "192.0.2.7".parse().unwrap()
}

#[test]
fn hash_round_trips_through_its_text_and_verifies_only_its_password() {
    let h = PasswordHash::new("correct horse", 1000);
    let text = h.to_string();
    assert!(text.starts_with("pbkdf2-sha256$1000$"), "{text}");
    let back: PasswordHash = text.parse().unwrap();
    assert!(back.verify("correct horse"));
    assert!(!back.verify("correct horse "));
    assert_ne!(
        PasswordHash::new("correct horse", 1000),
        h,
        "salt is random"
    );
}

#[test]
fn malformed_hashes_are_refused() {
    for bad in [
        "",
        "pbkdf2-sha256$1000$00",
        "pbkdf2-sha256$0$00$00",
        "pbkdf2-sha1$1000$00$".to_owned().as_str(),
        "pbkdf2-sha256$1000$zz$00",
        "pbkdf2-sha256$1000$0011$0011",
    ] {
        assert_eq!(bad.parse::<PasswordHash>(), Err(HashError::Shape), "{bad}");
    }
}

#[test]
fn without_a_user_only_loopback_reads_unless_remote_is_allowed() {
    let local = Access::new(&WebConfig::default());
    assert_eq!(
        local.check("127.0.0.1".parse().unwrap(), None),
        Verdict::Allow
    );
    assert_eq!(local.check("::1".parse().unwrap(), None), Verdict::Allow);
    assert_eq!(
        local.check("::ffff:127.0.0.1".parse().unwrap(), None),
        Verdict::Allow
    );
    assert_eq!(local.check(remote(), None), Verdict::RemoteRefused);
    let open = Access::new(&WebConfig {
        allow_remote: true,
        ..Default::default()
    });
    assert_eq!(open.check(remote(), None), Verdict::Allow);
}

#[test]
fn with_a_user_everyone_logs_in_even_on_loopback() {
    let access = Access::new(&WebConfig {
        user: "ops".into(),
        password_hash: PasswordHash::new("s3cret:with colon", 1000).to_string(),
        allow_remote: false,
    });
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(access.check(local, None), Verdict::Login);
    let wrong = header("ops", "nope");
    assert_eq!(access.check(local, Some(wrong.as_bytes())), Verdict::Login);
    let other_user = header("root", "s3cret:with colon");
    assert_eq!(
        access.check(remote(), Some(other_user.as_bytes())),
        Verdict::Login
    );
    let right = header("ops", "s3cret:with colon");
    assert_eq!(
        access.check(remote(), Some(right.as_bytes())),
        Verdict::Allow
    );
    // Remembered: the second check must not accept a different header.
    assert_eq!(
        access.check(remote(), Some(right.as_bytes())),
        Verdict::Allow
    );
    assert_eq!(
        access.check(remote(), Some(wrong.as_bytes())),
        Verdict::Login
    );
    assert_eq!(access.check(remote(), Some(b"Bearer abc")), Verdict::Login);
}

#[test]
fn base64_decodes_every_padding_and_refuses_junk() {
    assert_eq!(base64_decode("dXNlcjpwdw==").unwrap(), b"user:pw");
    assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
    assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
    assert_eq!(base64_decode("YQ==").unwrap(), b"a");
    assert_eq!(base64_decode("").unwrap(), b"");
    assert!(base64_decode("Y").is_none());
    assert!(base64_decode("a*b=").is_none());
}

fn ops_access() -> Access {
    Access::new(&WebConfig {
        user: "ops".into(),
        password_hash: PasswordHash::new("right", 1000).to_string(),
        allow_remote: false,
    })
}

#[test]
fn an_address_that_sends_ten_wrong_passwords_waits_out_the_minute() {
    let access = ops_access();
    let t0 = Instant::now();
    let wrong = header("ops", "guess");
    let right = header("ops", "right");
    for i in 0..MAX_WRONG_PASSWORDS {
        let at = t0 + Duration::from_secs(u64::from(i));
        assert_eq!(
            access.check_at(remote(), Some(wrong.as_bytes()), at),
            Verdict::Login
        );
    }
    // Now even the right password is not checked from there...
    let later = t0 + Duration::from_secs(15);
    assert_eq!(
        access.check_at(remote(), Some(right.as_bytes()), later),
        Verdict::TooManyWrong { retry_after_s: 45 }
    );
    assert!(
        access
            .quick_check_at(remote(), Some(right.as_bytes()), later)
            .is_some()
    );
    // ...while another address logs in as usual.
    let other: IpAddr = "198.51.100.1".parse().unwrap();
    assert_eq!(
        access.check_at(other, Some(right.as_bytes()), later),
        Verdict::Allow
    );
    // A minute after its first wrong one, the first address may try again.
    let after = t0 + WRONG_PASSWORD_WINDOW;
    assert_eq!(
        access.check_at(remote(), Some(wrong.as_bytes()), after),
        Verdict::Login
    );
    assert_eq!(
        access.check_at(remote(), Some(wrong.as_bytes()), after),
        Verdict::Login,
        "a new window counts from one"
    );
}

#[test]
fn a_browser_already_logged_in_is_never_held_by_a_guesser() {
    let access = ops_access();
    let right = header("ops", "right");
    let t0 = Instant::now();
    assert_eq!(
        access.check_at(remote(), Some(right.as_bytes()), t0),
        Verdict::Allow
    );
    for _ in 0..MAX_WRONG_PASSWORDS {
        access.check_at(remote(), Some(header("ops", "x").as_bytes()), t0);
    }
    // The remembered header needs no PBKDF2 and is not refused.
    assert_eq!(
        access.quick_check_at(remote(), Some(right.as_bytes()), t0),
        Some(Verdict::Allow)
    );
    // A header that has not verified needs the slow check (None) until
    // its address is refused.
    let fresh: IpAddr = "203.0.113.9".parse().unwrap();
    assert_eq!(
        access.quick_check_at(fresh, Some(header("ops", "y").as_bytes()), t0),
        None
    );
}

#[test]
fn ipv6_guesses_count_per_64_and_the_table_stays_bounded() {
    let access = ops_access();
    let t0 = Instant::now();
    // Ten addresses of one /64: one source.
    for i in 0..MAX_WRONG_PASSWORDS {
        let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
        access.check_at(ip, Some(header("ops", "g").as_bytes()), t0);
    }
    let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
    assert!(matches!(
        access.check_at(same_64, Some(header("ops", "right").as_bytes()), t0),
        Verdict::TooManyWrong { .. }
    ));
    let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(
        access.check_at(next_64, Some(header("ops", "right").as_bytes()), t0),
        Verdict::Allow
    );
    // A spray over many more addresses than are remembered.
    for i in 0..(MAX_TRACKED as u32 + 100) {
        let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        access.check_at(ip, Some(b"Basic Og=="), t0);
    }
    assert!(access.wrong.lock().unwrap().tracked() <= MAX_TRACKED);
}
