//! The subject of an X.509 certificate, for `use_identity_as_username` (the first common name) and
//! `use_subject_as_username` (the whole subject as OpenSSL prints it with `XN_FLAG_RFC2253`, as Mosquitto
//! does). A minimal DER reader: it walks to `tbsCertificate.subject` and nothing else. The certificate
//! has already been verified by rustls; still, any input only yields `None`, never a panic.

use crate::der::{dotted, element};

/// One attribute of the subject: its type (OID, dotted) and its value as raw DER (tag and content).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    oid: String,
    tag: u8,
    value: Vec<u8>,
}

/// The subject's relative distinguished names, in certificate order; each is a set of attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(Vec<Vec<Attribute>>);

const OID_COMMON_NAME: &str = "2.5.4.3";

impl Subject {
    /// Parses the subject of a DER certificate.
    pub fn from_certificate(der: &[u8]) -> Option<Subject> {
        let (tag, cert, _) = element(der)?;
        expect(tag, 0x30)?;
        let (tag, mut tbs, _) = element(cert)?;
        expect(tag, 0x30)?;
        // version [0] EXPLICIT is optional; then serial, signature, issuer, validity, subject.
        let (tag, _, rest) = element(tbs)?;
        if tag == 0xA0 {
            tbs = rest;
        }
        for _ in 0..4 {
            tbs = element(tbs)?.2;
        }
        let (tag, name, _) = element(tbs)?;
        expect(tag, 0x30)?;
        parse_name(name)
    }

    /// The first common name (CN), as text.
    pub fn common_name(&self) -> Option<String> {
        self.0.iter().flatten().find(|a| a.oid == OID_COMMON_NAME).and_then(|a| text(a.tag, &a.value))
    }

    /// Every common name, as text, in certificate order (OpenSSL's host check tries each).
    pub fn common_names(&self) -> Vec<String> {
        self.0.iter().flatten().filter(|a| a.oid == OID_COMMON_NAME).filter_map(|a| text(a.tag, &a.value)).collect()
    }

    /// The subject in RFC 2253 form, as `openssl x509 -nameopt RFC2253` and Mosquitto print it: the last
    /// RDN first, `,` between RDNs, `+` inside one, special characters escaped.
    pub fn rfc2253(&self) -> String {
        let rdns: Vec<String> =
            self.0.iter().rev().map(|rdn| rdn.iter().map(format_attribute).collect::<Vec<_>>().join("+")).collect();
        rdns.join(",")
    }
}

fn expect(tag: u8, wanted: u8) -> Option<()> {
    (tag == wanted).then_some(())
}

fn parse_name(mut name: &[u8]) -> Option<Subject> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (tag, mut set, rest) = element(name)?;
        expect(tag, 0x31)?;
        name = rest;
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let (tag, pair, rest) = element(set)?;
            expect(tag, 0x30)?;
            set = rest;
            let (tag, oid, value) = element(pair)?;
            expect(tag, 0x06)?;
            let (value_tag, content, _) = element(value)?;
            rdn.push(Attribute { oid: dotted(oid)?, tag: value_tag, value: content.to_vec() });
        }
        rdns.push(rdn);
    }
    Some(Subject(rdns))
}

/// OpenSSL's short name of an attribute type, where it has one.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// A string value as text: UTF8String, PrintableString, IA5String, T61String, BMPString, UniversalString.
fn text(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        0x0C | 0x13 | 0x16 | 0x14 | 0x12 | 0x1A => Some(String::from_utf8_lossy(value).into_owned()),
        0x1E => {
            let units: Vec<u16> = value.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            Some(String::from_utf16_lossy(&units))
        }
        0x1C => Some(
            value
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{FFFD}'))
                .collect(),
        ),
        _ => None,
    }
}

fn format_attribute(a: &Attribute) -> String {
    match (short_name(&a.oid), text(a.tag, &a.value)) {
        (Some(name), Some(value)) => format!("{name}={}", escape(&value)),
        // Unknown types or values: the OID and the DER value in hex, as RFC 2253 section 2.4 says.
        _ => {
            let mut der = vec![a.tag];
            let len = a.value.len();
            if len < 0x80 {
                der.push(len as u8);
            } else {
                let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
                der.push(0x80 | bytes.len() as u8);
                der.extend(bytes);
            }
            der.extend(&a.value);
            let hex: String = der.iter().map(|b| format!("{b:02X}")).collect();
            let name = short_name(&a.oid).map_or_else(|| a.oid.clone(), str::to_owned);
            format!("{name}=#{hex}")
        }
    }
}

/// RFC 2253 escaping as OpenSSL does it: `,+"\<>;` with a backslash, a leading `#` or space and a
/// trailing space too; control characters and every byte of a non-ASCII character as `\XX`.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.len().saturating_sub(1);
    for (i, c) in value.char_indices() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if (c as u32) < 0x20 || c as u32 == 0x7F || !c.is_ascii() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(oid: &str, value: &str) -> Attribute {
        Attribute { oid: oid.to_owned(), tag: 0x0C, value: value.as_bytes().to_vec() }
    }

    #[test]
    fn rfc2253_prints_the_last_rdn_first_and_escapes_specials() {
        let subject = Subject(vec![
            vec![attribute("2.5.4.6", "GB")],
            vec![attribute("2.5.4.10", "Acme, Inc.")],
            vec![attribute("2.5.4.3", " client#1 ")],
        ]);
        assert_eq!(subject.rfc2253(), "CN=\\ client#1\\ ,O=Acme\\, Inc.,C=GB");
        assert_eq!(subject.common_name().as_deref(), Some(" client#1 "));
    }

    #[test]
    fn non_ascii_bytes_and_unknown_types_are_hex() {
        let subject = Subject(vec![vec![attribute("2.5.4.3", "é"), attribute("1.2.3.4", "x")]]);
        assert_eq!(subject.rfc2253(), "CN=\\C3\\A9+1.2.3.4=#0C0178");
    }

    #[test]
    fn truncated_der_is_none_not_a_panic() {
        let input = [0x30, 0x82, 0x01];
        assert_eq!(Subject::from_certificate(&input), None);
        for len in 0..8 {
            let bytes = vec![0x30; len];
            let _ = Subject::from_certificate(&bytes);
        }
    }
}
