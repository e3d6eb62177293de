//! Regression tests for the data kinds' validation: phone numbers checked
//! against their country calling code, amounts in their currency's minor
//! unit, names and addresses compared after Unicode normalisation, and dates
//! that end where timestamps do, and payment tokens that are never card
//! numbers. Public API only.

use privacy_pledge::data::{
    Amount, Date, FullName, InvalidData, Kind, PaymentToken, PhoneNumber, PostalAddress,
    PurchaseRecord, Reason,
};
use privacy_pledge::policy::RuleId;
use privacy_pledge::purpose::Transaction;
use privacy_pledge::{Custodian, ExposeSecret, PersonalInfo, SubjectId};

/// The error says its kind and reason, and nothing of the input.
fn refused(result: Result<impl Sized, InvalidData>, input: &str) -> Reason {
    let Err(e) = result else {
        panic!("{input:?} was accepted");
    };
    let shown = format!("{e} {e:?}");
    assert_eq!(
        e.to_string(),
        format!("invalid {}: {}", e.kind().label(), e.reason())
    );
    assert!(!shown.contains(input.trim()), "{shown} echoes {input:?}");
    e.reason()
}

fn phone(input: &str) -> String {
    PhoneNumber::parse(input)
        .unwrap_or_else(|e| panic!("{input:?}: {e}"))
        .expose_secret()
        .to_owned()
}

// ---------------------------------------------------------------- phones

#[test]
fn a_bracketed_trunk_prefix_after_the_country_code_is_dropped() {
    // Was "+4402079460958": another number.
    assert_eq!(phone("+44 (0) 20 7946 0958"), "+442079460958");
    assert_eq!(phone("+44(0)20 7946 0958"), "+442079460958");
    assert_eq!(phone("+44 (0)20-7946-0958"), "+442079460958");
    assert_eq!(phone("+49 (0)30 1234 5678"), "+493012345678");
    assert_eq!(phone("+33 (0)1 42 68 53 00"), "+33142685300");
}

#[test]
fn a_zero_that_may_belong_to_the_number_is_refused() {
    for input in [
        // Not right after the country code.
        "+44 20 (0) 7946 0958",
        "+(0)44 20 7946 0958",
        "+4 (0)4 20 7946 0958",
        // Twice.
        "+44 (0)(0) 20 7946 0958",
        // Italy dials no trunk prefix: the 0 of 06 is part of the number.
        "+39 (0)6 6982 1234",
        // North America's trunk prefix is 1, Russia's 8.
        "+1 (0) 415 555 0132",
        "+7 (0) 495 123 4567",
    ] {
        assert_eq!(
            refused(PhoneNumber::parse(input), input),
            Reason::TrunkPrefix,
            "{input}"
        );
    }
    // Zeros written as digits are digits: Italy's numbers keep their 0.
    assert_eq!(phone("+39 06 6982 1234"), "+390669821234");
}

#[test]
fn seven_digit_numbers_of_small_countries_are_accepted() {
    assert_eq!(phone("+683 4002"), "+6834002"); // Niue
    assert_eq!(phone("+690 3291"), "+6903291"); // Tokelau
    assert_eq!(phone("+290 22001"), "+29022001"); // Saint Helena
}

#[test]
fn unknown_country_codes_are_refused() {
    for input in [
        "+28 1234 5678",    // 28x are spare
        "+801 2345 6789",   // 801–807 are spare
        "+999 1234 5678",   // reserved
        "+0 44 20 7946 09", // no country code starts with 0
        "+00 44 20 7946 0958",
    ] {
        assert_eq!(
            refused(PhoneNumber::parse(input), input),
            Reason::UnknownCountryCode,
            "{input}"
        );
    }
}

#[test]
fn lengths_are_checked_against_the_country_code() {
    for input in [
        "+1 415 555 013",        // 9 digits after +1: one short
        "+1 415 555 01322",      // 11: one too many
        "+44 20 7946 09581",     // 11 after +44
        "+33 1 42 68 53 0",      // 8 after +33 (France: 9)
        "+683 400",              // 3 after +683
        "+49 3012 3456 7890 12", // 14 after +49: 16 digits in all
        "+1",
        "+",
    ] {
        assert_eq!(
            refused(PhoneNumber::parse(input), input),
            Reason::DigitCount,
            "{input}"
        );
    }
}

#[test]
fn the_sample_numbers_of_the_crate_still_parse() {
    for (input, e164) in [
        ("+1 415 555 0132", "+14155550132"),
        ("+14155550132", "+14155550132"),
        ("+1 (415) 555-0132", "+14155550132"),
        ("+14155550199", "+14155550199"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+44 (20) 7946-0958", "+442079460958"),
        ("+442079460958", "+442079460958"),
        ("+49 30 123456", "+4930123456"),
        ("+4930123456", "+4930123456"),
        ("+49 30 1234-5678", "+493012345678"),
    ] {
        assert_eq!(phone(input), e164, "{input}");
    }
}

#[test]
fn reasons_read_without_the_number() {
    assert_eq!(
        Reason::UnknownCountryCode.to_string(),
        "it does not begin with an assigned country calling code"
    );
    assert!(!Reason::DigitCount.to_string().contains("8 to 15"));
    assert!(Reason::TrunkPrefix.to_string().contains("(0)"));
}

// ---------------------------------------------------------------- amounts

#[test]
fn amounts_print_with_their_currency_minor_unit() {
    for (minor, currency, digits, shown) in [
        (500, "JPY", 0, "500 JPY"),
        (1_000, "KRW", 0, "1000 KRW"),
        (1_500, "BHD", 3, "1.500 BHD"),
        (1, "KWD", 3, "0.001 KWD"),
        (2_500, "TND", 3, "2.500 TND"),
        (500, "USD", 2, "5.00 USD"),
        (4_995, "EUR", 2, "49.95 EUR"),
        (5, "GBP", 2, "0.05 GBP"),
        (10_000, "CLF", 4, "1.0000 CLF"),
        (1, "UYW", 4, "0.0001 UYW"),
        (0, "XOF", 0, "0 XOF"),
    ] {
        let a = Amount::new(minor, currency).unwrap();
        assert_eq!(a.minor_unit_digits(), digits, "{currency}");
        assert_eq!(a.to_string(), shown);
        assert_eq!(a.minor_units(), minor);
        assert_eq!(a.currency(), currency);
    }
}

#[test]
fn unknown_currencies_are_refused() {
    for code in ["XYZ", "ABC", "HRK", "XAU", "XXX", "XTS"] {
        assert_eq!(
            Amount::new(1, code).unwrap_err().reason(),
            Reason::UnknownCurrency,
            "{code}"
        );
    }
    for code in ["usd", "US", "USDD", "", "US1", "ÜSD"] {
        assert_eq!(
            Amount::new(1, code).unwrap_err().reason(),
            Reason::InvalidCurrencyCode,
            "{code:?}"
        );
    }
    let e = Amount::new(1, "XYZ").unwrap_err();
    assert_eq!(e.kind(), Kind::PurchaseRecord);
    assert!(!e.to_string().contains("XYZ"));
}

/// A currency in lower case is told what a currency must be (not "a field
/// is out of range"), in one message whatever the input, which it never
/// repeats.
#[test]
fn a_lowercase_currency_is_told_to_use_an_upper_case_iso_4217_code() {
    const MESSAGE: &str = "invalid purchase record: the currency must be an ISO 4217 code in upper case (three letters A to Z, such as EUR)";
    for code in ["eur", "Eur", "usd", "euro", "€", "E R"] {
        let e = Amount::new(100, code).unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidCurrencyCode, "{code:?}");
        assert_eq!(e.to_string(), MESSAGE, "{code:?}");
    }
}

/// An order id with a space is told what an order id may hold (not the
/// phone number's list of characters), in one message that never repeats
/// the id.
#[test]
fn an_order_id_with_a_space_gets_a_message_of_its_own() {
    const MESSAGE: &str = "invalid purchase record: the order id may hold only visible ASCII characters (letters, digits and punctuation, no spaces)";
    let (amount, date) = (
        Amount::new(6_995, "USD").unwrap(),
        Date::new(2018, 6, 30).unwrap(),
    );
    for id in ["ORD 1", "ORD\t1", "ORDÉ1", "ORD\u{200b}1"] {
        let e = PurchaseRecord::new(id, "Data Recovery Pro", amount, date).unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidOrderId, "{id:?}");
        assert_eq!(e.to_string(), MESSAGE, "{id:?}");
        assert!(!e.to_string().contains("ORD"));
    }
    // Surrounding white space is trimmed, not refused.
    assert!(PurchaseRecord::new(" ORD-1 ", "Data Recovery Pro", amount, date).is_ok());
}

#[test]
fn every_listed_currency_is_accepted_and_listed_once() {
    let codes: Vec<&str> = Amount::currencies().collect();
    assert!(codes.len() >= 150, "{}", codes.len());
    assert!(codes.windows(2).all(|w| w[0] < w[1]));
    for code in [
        "USD", "EUR", "GBP", "JPY", "CHF", "CNY", "INR", "BRL", "IQD", "LYD", "JOD", "OMR", "VND",
    ] {
        assert!(codes.contains(&code), "{code}");
    }
    for code in codes {
        assert!(Amount::new(1, code).is_ok(), "{code}");
    }
}

// ---------------------------------------------------------------- names and addresses

const COMPOSED: &str = "Zo\u{eb} Stra\u{df}e";
const DECOMPOSED: &str = "Zoe\u{308} Stra\u{df}e";

#[test]
fn composed_and_decomposed_names_are_the_same_name() {
    let a = FullName::parse(COMPOSED).unwrap();
    let b = FullName::parse(DECOMPOSED).unwrap();
    assert_eq!(a, b);
    // Kept in NFC: both spellings are stored (and sealed) as the same text.
    assert_eq!(b.expose_secret(), COMPOSED);
    assert_eq!(a.expose_secret(), b.expose_secret());
}

#[test]
fn names_match_after_full_case_folding() {
    let name = |s| FullName::parse(s).unwrap();
    assert_eq!(name("Straße"), name("STRASSE"));
    assert_eq!(name("Zoë STRASSE"), name(DECOMPOSED));
    assert_eq!(name("ΣΊΣΥΦΟΣ"), name("σίσυφος"));
    assert_ne!(name("Zoë"), name("Zoe"));
    assert_ne!(name("Strasse"), name("Strase"));
}

#[test]
fn pseudonyms_are_computed_over_the_normalised_name() {
    let custodian = Custodian::in_memory();
    let of = |text: &str| {
        let info: PersonalInfo<FullName, Transaction> =
            PersonalInfo::collect(SubjectId::random(), FullName::parse(text).unwrap());
        custodian.pseudonym(&info).unwrap()
    };
    assert_eq!(of(COMPOSED), of(DECOMPOSED));
    assert_eq!(of("Straße"), of("STRASSE"));
    assert_ne!(of("Zoë"), of("Zoe"));
}

#[test]
fn a_decomposed_name_seals_and_opens_in_nfc() {
    let custodian = Custodian::in_memory();
    let info: PersonalInfo<FullName, Transaction> =
        PersonalInfo::collect(SubjectId::random(), FullName::parse(DECOMPOSED).unwrap());
    let sealed = custodian.seal(&info).unwrap();
    let opened = custodian.open(&sealed).unwrap();
    let text = custodian
        .access(&opened, |n| n.expose_secret().to_owned())
        .unwrap();
    assert_eq!(text, COMPOSED);
}

const INVISIBLE: [char; 15] = [
    '\u{200b}', // zero-width space
    '\u{200c}', // zero-width non-joiner
    '\u{200d}', // zero-width joiner
    '\u{2060}', // word joiner
    '\u{feff}', // zero-width no-break space (byte-order mark)
    '\u{ad}',   // soft hyphen
    '\u{200e}', // left-to-right mark
    '\u{202a}', // left-to-right embedding
    '\u{202b}', // right-to-left embedding
    '\u{202c}', // pop directional formatting
    '\u{202d}', // left-to-right override
    '\u{202e}', // right-to-left override
    '\u{2066}', // left-to-right isolate
    '\u{2068}', // first strong isolate
    '\u{2069}', // pop directional isolate
];

#[test]
fn invisible_characters_are_refused_in_names() {
    for c in INVISIBLE {
        let between_letters = matches!(c, '\u{200c}' | '\u{200d}');
        for input in [format!("Ada{c}Lovelace"), format!("{c}Ada Lovelace")] {
            if between_letters && input.starts_with("Ada") {
                continue; // joiners are allowed between letters: see below
            }
            assert_eq!(
                refused(FullName::parse(&input), &input),
                Reason::InvisibleCharacter,
                "U+{:04X}",
                u32::from(c)
            );
        }
    }
}

#[test]
fn invisible_characters_are_refused_in_postal_addresses() {
    for c in INVISIBLE {
        let input = format!("221B Baker{c} Street\nLondon NW1 6XE\nGB");
        assert_eq!(
            refused(PostalAddress::parse(&input), &input),
            Reason::InvisibleCharacter,
            "U+{:04X}",
            u32::from(c)
        );
    }
}

#[test]
fn postal_addresses_compare_normalised() {
    let addr = |s: &str| PostalAddress::parse(s).unwrap();
    assert_eq!(
        addr("Hauptstraße 1\n10115 Berlin\nDE"),
        addr("HAUPTSTRASSE 1\n10115  berlin\nDE")
    );
    assert_eq!(
        addr("Rue de l'Église 3\nGenève\nCH"),
        addr("Rue de l'E\u{301}glise 3\nGene\u{300}ve\nCH")
    );
    assert_ne!(
        addr("Hauptstraße 1\n10115 Berlin\nDE"),
        addr("Hauptstraße 1\n10115 Berlin\nAT")
    );
    let custodian = Custodian::in_memory();
    let of = |text: &str| {
        let info: PersonalInfo<PostalAddress, Transaction> =
            PersonalInfo::collect(SubjectId::random(), addr(text));
        custodian.pseudonym(&info).unwrap()
    };
    assert_eq!(
        of("Rue de l'Église 3\nGenève\nCH"),
        of("RUE DE L'E\u{301}GLISE 3\nGENE\u{300}VE\nCH")
    );
}

// ---------------------------------------------------------------- dates

#[test]
fn dates_run_to_the_last_day_a_timestamp_holds() {
    let last = Date::new(2554, 7, 21).unwrap();
    assert_eq!(last, Date::LAST);
    assert_eq!(last.start().unix_seconds(), 18_446_659_200);
    assert_eq!(last.start().unix_nanos(), 18_446_659_200_000_000_000);
    assert_eq!(last.start().to_string(), "2554-07-21T00:00:00Z");
    assert_eq!(Date::new(1970, 1, 1).unwrap().start().unix_seconds(), 0);
    for (y, m, d) in [
        (2554, 7, 22),
        (2554, 8, 1),
        (2555, 1, 1),
        (9999, 12, 31),
        (1969, 12, 31),
    ] {
        assert_eq!(
            Date::new(y, m, d).unwrap_err().reason(),
            Reason::InvalidField,
            "{y}-{m}-{d}"
        );
    }
}

#[test]
fn a_purchase_on_the_last_day_round_trips_through_a_sealed_envelope() {
    let custodian = Custodian::in_memory();
    for (minor, currency) in [(500, "JPY"), (1_500, "BHD"), (4_995, "EUR")] {
        let record = PurchaseRecord::new(
            "ORD-2554",
            "Time Capsule",
            Amount::new(minor, currency).unwrap(),
            Date::LAST,
        )
        .unwrap();
        let info: PersonalInfo<PurchaseRecord, Transaction> =
            PersonalInfo::collect(SubjectId::random(), record);
        let sealed = custodian.seal(&info).unwrap();
        let opened = custodian.open(&sealed).unwrap();
        let (amount, date, start) = custodian
            .access(&opened, |r| (r.amount(), r.date(), r.date().start()))
            .unwrap();
        assert_eq!(amount, Amount::new(minor, currency).unwrap());
        assert_eq!(date, Date::LAST);
        assert_eq!(start.unix_seconds(), 18_446_659_200);
    }
}

/// Host code (A1) records a second purchase under an order id it reuses —
/// another product, another amount, another day. Equality, lookup tokens and
/// pseudonyms cover the whole record, so the two are never taken for one.
#[test]
fn a1_purchases_differing_only_after_the_order_id_are_different() {
    let custodian = Custodian::in_memory();
    let subject = SubjectId::random();
    let record = |id: &str, product: &str, minor: u64, currency: &str, day: u8| {
        PurchaseRecord::new(
            id,
            product,
            Amount::new(minor, currency).unwrap(),
            Date::new(2018, 6, day).unwrap(),
        )
        .unwrap()
    };
    let original = record("ORD-1001", "Data Recovery Pro", 6_995, "USD", 30);
    let others = [
        record("ORD-1001", "Partition Manager", 6_995, "USD", 30),
        record("ORD-1001", "Data Recovery Pro", 4_995, "USD", 30),
        record("ORD-1001", "Data Recovery Pro", 6_995, "EUR", 30),
        record("ORD-1001", "Data Recovery Pro", 6_995, "USD", 29),
        record("ORD-1001", "Partition Manager", 100, "JPY", 1),
        // Where the id ends and the product starts is part of the form.
        record("ORD-100", "1Data Recovery Pro", 6_995, "USD", 30),
    ];
    let info = |r: &PurchaseRecord| -> PersonalInfo<PurchaseRecord, Transaction> {
        PersonalInfo::collect(subject, r.clone())
    };
    let token = custodian.lookup_token_of(&original);
    let stored_token = custodian.lookup_token(&info(&original)).unwrap();
    let pseudonym = custodian.pseudonym(&info(&original)).unwrap();
    assert_eq!(token, stored_token);
    for other in &others {
        assert_ne!(&original, other);
        assert_ne!(token, custodian.lookup_token_of(other));
        assert_ne!(stored_token, custodian.lookup_token(&info(other)).unwrap());
        assert_ne!(pseudonym, custodian.pseudonym(&info(other)).unwrap());
    }
    // The same record, built again, is still the same record.
    let again = record("ORD-1001", "Data Recovery Pro", 6_995, "USD", 30);
    assert_eq!(original, again);
    assert_eq!(token, custodian.lookup_token_of(&again));
    assert_eq!(pseudonym, custodian.pseudonym(&info(&again)).unwrap());
    // And after a round trip through a sealed envelope.
    let sealed = custodian.seal(&info(&original)).unwrap();
    let opened = custodian.open(&sealed).unwrap();
    assert_eq!(custodian.lookup_token(&opened).unwrap(), token);
    assert_eq!(custodian.pseudonym(&opened).unwrap(), pseudonym);
}

/// Zero-width (non-)joiners are how Persian and several Indic scripts write
/// names: allowed between two letters, refused anywhere else, and ignored
/// when names are compared.
#[test]
fn joiners_between_letters_are_part_of_a_name() {
    let with = FullName::parse("\u{0645}\u{06cc}\u{200c}\u{062e}\u{0648}\u{0627}\u{0647}").unwrap();
    let without = FullName::parse("\u{0645}\u{06cc}\u{062e}\u{0648}\u{0627}\u{0647}").unwrap();
    assert_eq!(with, without);
    for bad in [
        "\u{200c}Ada",
        "Ada\u{200d}",
        "Ada \u{200c}King",
        "Ada\u{200c} King",
    ] {
        assert_eq!(
            FullName::parse(bad).unwrap_err().reason(),
            Reason::InvisibleCharacter,
            "{bad:?}"
        );
    }
}

// ---------------------------------------------------------------- payment tokens

/// Host code (A1) takes what a customer typed into the card field as the
/// processor's token: the policy holds no card numbers (R1).
#[test]
fn a1_card_number_is_not_a_payment_token() {
    for card in [
        // Visa, Mastercard, American Express test numbers, as typed.
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "5555555555554444",
        "5555 5555 5555 4444",
        "5555-5555-5555-4444",
        "378282246310005",
        "3782 822463 10005",
        "3782-822463-10005",
        // Other separators, white space around, and inside a longer token.
        "4242.4242.4242.4242",
        "4242_4242_4242_4242",
        "  4242 4242 4242 4242\n",
        "4242\u{a0}4242\u{a0}4242\u{a0}4242",
        "tok_4242424242424242",
        "card:5555-5555-5555-4444",
        "4242 4242 4242 4242 12/29 123",
        // Discover (16), JCB (16), Visa of 13 and 19 digits.
        "6011111111111117",
        "3530111333300000",
        "4222222222222",
        "4000000000000000006",
    ] {
        assert_eq!(
            refused(PaymentToken::parse(card), card),
            Reason::CardNumber,
            "{card:?}"
        );
        let e = privacy_pledge::Error::from(PaymentToken::parse(card).unwrap_err());
        assert_eq!(e.rule(), Some(RuleId::R1));
        assert!(e.to_string().contains("R1"), "{e}");
    }
    // A 16-digit number that fails the Luhn check is no card number an
    // issuer gives out; processors use such numeric references. Accepted.
    assert!(PaymentToken::parse("4242424242424241").is_ok());
    assert!(PaymentToken::parse("8415698462516993").is_ok());
    // Twelve digits are too few, twenty too many, for a card.
    assert!(PaymentToken::parse("424242424242").is_ok());
    assert!(PaymentToken::parse("42424242424242424242").is_ok());
    // Real processor tokens pass, short digit runs included.
    for token in [
        "tok_1NX2bq2eZvKYlo2C",
        "pm_1NirD82eZvKYlo2C",
        "card_1NX2bq2eZvKYlo2C",
        "tok_visa_4242",
        "tok_quux",
        "src_4242ab",
        // UUIDs, as some processors issue: the form is exempt, whatever
        // its digits (nobody writes a card number in groups of 8, 4, 4).
        "0d3f2ad6-0b0b-4d5a-9d1f-a5c2b2b1c1e0",
        "42424242-4242-4242-4242-424242424242",
    ] {
        assert!(PaymentToken::parse(token).is_ok(), "{token:?}");
    }
}
