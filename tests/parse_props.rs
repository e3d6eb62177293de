//! Parsing never panics and never echoes its input in an error.

use privacy_pledge::data::{
    EmailAddress, FullName, InvalidData, PaymentToken, PhoneNumber, PostalAddress,
};
use privacy_pledge::SubjectId;
use proptest::prelude::*;

/// The only thing an error may say is its kind and reason: its text must equal
/// the text built from those two, whatever the input was.
fn check(result: Result<(), InvalidData>, input: &str) {
    if let Err(e) = result {
        // Built from the kind and the (data-free) reason alone.
        assert_eq!(
            e.to_string(),
            format!("invalid {}: {}", e.kind().label(), e.reason())
        );
        let shown = format!("{e} {e:?}");
        let distinctive = input.chars().count() >= 6
            && input.chars().any(|c| !c.is_ascii_lowercase() && c != ' ');
        if distinctive {
            assert!(!shown.contains(input), "error echoes its input: {shown}");
        }
    }
}

fn parse_all(s: &str) {
    check(EmailAddress::parse(s).map(|_| ()), s);
    check(FullName::parse(s).map(|_| ()), s);
    check(PhoneNumber::parse(s).map(|_| ()), s);
    check(PostalAddress::parse(s).map(|_| ()), s);
    check(PaymentToken::parse(s).map(|_| ()), s);
    let _ = s.parse::<SubjectId>();
    let _ = s.parse::<privacy_pledge::country::Country>();
    let _ = s.parse::<privacy_pledge::transfer::Mechanism>();
    let _ = s.parse::<privacy_pledge::audit::Checkpoint>();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text(s in any::<String>()) {
        parse_all(&s);
    }

    #[test]
    fn email_shaped(local in "[a-zA-Z0-9.+_@\"-]{0,70}", domain in "[a-zA-Z0-9.\\-\\[\\]]{0,70}") {
        let s = format!("{local}@{domain}");
        parse_all(&s);
        if let Ok(e) = EmailAddress::parse(&s) {
            // What is accepted round-trips its parts.
            prop_assert_eq!(format!("{}@{}", e.local_part(), e.domain()), s.trim());
            prop_assert!(e.local_part().len() <= 64 && s.len() <= 254);
        }
    }

    #[test]
    fn phone_shaped(s in "[+0-9 ()./-]{0,30}") {
        parse_all(&s);
        if let Ok(p) = PhoneNumber::parse(&s) {
            use privacy_pledge::ExposeSecret;
            let digits = p.expose_secret().len() - 1;
            prop_assert!((6..=15).contains(&digits));
        }
    }

    #[test]
    fn address_shaped(lines in proptest::collection::vec("[ -~]{0,140}", 0..10), cc in "[A-Za-z]{0,3}") {
        let s = format!("{}\n{cc}", lines.join("\n"));
        parse_all(&s);
    }
}
