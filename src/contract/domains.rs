//! Named value domains a string column can be restricted to (`domain = "…"` in a contract).

/// A closed, externally defined set of codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// ISO 3166-1 alpha-2 country codes (officially assigned).
    Iso3166Alpha2,
}

impl Domain {
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "iso_3166_1_alpha2" => Some(Domain::Iso3166Alpha2),
            _ => None,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Domain::Iso3166Alpha2 => "an ISO 3166-1 alpha-2 country code",
        }
    }

    /// Whether `value` (already normalised) belongs to the domain.
    pub fn contains(self, value: &str) -> bool {
        match self {
            Domain::Iso3166Alpha2 => ISO_3166_1_ALPHA2.binary_search(&value).is_ok(),
        }
    }
}

/// The 249 officially assigned codes, sorted for binary search.
const ISO_3166_1_ALPHA2: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_country_list_is_complete_and_sorted() {
        assert_eq!(ISO_3166_1_ALPHA2.len(), 249);
        assert!(ISO_3166_1_ALPHA2.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn namibia_is_a_country_not_a_null() {
        let d = Domain::Iso3166Alpha2;
        assert!(d.contains("NA") && d.contains("US") && d.contains("DE"));
        assert!(!d.contains("UK") && !d.contains("XX") && !d.contains("us"));
    }
}
