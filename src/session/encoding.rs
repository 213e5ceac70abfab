//! Client encoding names as PostgreSQL understands them.
//!
//! PostgreSQL reports `client_encoding` by its canonical name (`UTF8`, `EUC_JP`, ...) whatever
//! alias the client sent (`utf8`, `UTF-8`, `eucjp`, `ISO-8859-1`, ...), and refuses a name it
//! does not know. pgferry answers the login itself, so it must canonicalise (and refuse) the
//! same way: a client that logged in with `utf8` must see `UTF8`, and its tracked setting must
//! equal what the backend reports, or every checkout would find a difference to "fix".

/// Every alias PostgreSQL accepts (lower case, letters and digits only, as its lookup cleans
/// them) with the canonical name it stands for; from PostgreSQL's `encnames.c`.
const ALIASES: &[(&str, &str)] = &[
    ("abc", "WIN1258"),
    ("alt", "WIN866"),
    ("big5", "BIG5"),
    ("euccn", "EUC_CN"),
    ("eucjis2004", "EUC_JIS_2004"),
    ("eucjp", "EUC_JP"),
    ("euckr", "EUC_KR"),
    ("euctw", "EUC_TW"),
    ("gb18030", "GB18030"),
    ("gbk", "GBK"),
    ("iso88591", "LATIN1"),
    ("iso885910", "LATIN6"),
    ("iso885913", "LATIN7"),
    ("iso885914", "LATIN8"),
    ("iso885915", "LATIN9"),
    ("iso885916", "LATIN10"),
    ("iso88592", "LATIN2"),
    ("iso88593", "LATIN3"),
    ("iso88594", "LATIN4"),
    ("iso88595", "ISO_8859_5"),
    ("iso88596", "ISO_8859_6"),
    ("iso88597", "ISO_8859_7"),
    ("iso88598", "ISO_8859_8"),
    ("iso88599", "LATIN5"),
    ("johab", "JOHAB"),
    ("koi8", "KOI8R"),
    ("koi8r", "KOI8R"),
    ("koi8u", "KOI8U"),
    ("latin1", "LATIN1"),
    ("latin10", "LATIN10"),
    ("latin2", "LATIN2"),
    ("latin3", "LATIN3"),
    ("latin4", "LATIN4"),
    ("latin5", "LATIN5"),
    ("latin6", "LATIN6"),
    ("latin7", "LATIN7"),
    ("latin8", "LATIN8"),
    ("latin9", "LATIN9"),
    ("mskanji", "SJIS"),
    ("muleinternal", "MULE_INTERNAL"),
    ("shiftjis", "SJIS"),
    ("shiftjis2004", "SHIFT_JIS_2004"),
    ("sjis", "SJIS"),
    ("sqlascii", "SQL_ASCII"),
    ("tcvn", "WIN1258"),
    ("tcvn5712", "WIN1258"),
    ("uhc", "UHC"),
    ("unicode", "UTF8"),
    ("utf8", "UTF8"),
    ("vscii", "WIN1258"),
    ("win", "WIN1251"),
    ("win1250", "WIN1250"),
    ("win1251", "WIN1251"),
    ("win1252", "WIN1252"),
    ("win1253", "WIN1253"),
    ("win1254", "WIN1254"),
    ("win1255", "WIN1255"),
    ("win1256", "WIN1256"),
    ("win1257", "WIN1257"),
    ("win1258", "WIN1258"),
    ("win866", "WIN866"),
    ("win874", "WIN874"),
    ("win932", "SJIS"),
    ("win936", "GBK"),
    ("win949", "UHC"),
    ("win950", "BIG5"),
    ("windows1250", "WIN1250"),
    ("windows1251", "WIN1251"),
    ("windows1252", "WIN1252"),
    ("windows1253", "WIN1253"),
    ("windows1254", "WIN1254"),
    ("windows1255", "WIN1255"),
    ("windows1256", "WIN1256"),
    ("windows1257", "WIN1257"),
    ("windows1258", "WIN1258"),
    ("windows866", "WIN866"),
    ("windows874", "WIN874"),
    ("windows932", "SJIS"),
    ("windows936", "GBK"),
    ("windows949", "UHC"),
    ("windows950", "BIG5"),
];

/// Longest name PostgreSQL looks up (`NAMEDATALEN - 1`); longer ones are unknown.
const MAX_NAME_LEN: usize = 63;

/// The value PostgreSQL gives `client_encoding` when a client asks for `name`, or `None` if
/// PostgreSQL rejects the name. Like PostgreSQL, only letters and digits count, case-folded;
/// the exact spelling `UNICODE` is kept as is (a PostgreSQL concession to old JDBC drivers).
pub fn canonical_client_encoding(name: &str) -> Option<&str> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let key: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let index = ALIASES.binary_search_by(|(alias, _)| alias.cmp(&key.as_str()));
    let canonical = ALIASES.get(index.ok()?)?.1;
    Some(if name == "UNICODE" { name } else { canonical })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_sorted_for_the_binary_search() {
        assert!(ALIASES.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn spellings_resolve_to_postgres_names() {
        for (given, expected) in [
            ("utf8", Some("UTF8")),
            ("UTF-8", Some("UTF8")),
            ("unicode", Some("UTF8")),
            ("UNICODE", Some("UNICODE")),
            ("eucjp", Some("EUC_JP")),
            ("EUC-JP", Some("EUC_JP")),
            ("latin1", Some("LATIN1")),
            ("ISO_8859-1", Some("LATIN1")),
            ("sql_ascii", Some("SQL_ASCII")),
            ("WIN1252", Some("WIN1252")),
            ("windows-1252", Some("WIN1252")),
            ("nonsense", None),
            ("", None),
            ("---", None),
        ] {
            assert_eq!(canonical_client_encoding(given), expected, "{given}");
        }
        let long = format!("utf8{}", "-".repeat(60));
        assert_eq!(
            canonical_client_encoding(&long),
            None,
            "too long to look up"
        );
    }
}
