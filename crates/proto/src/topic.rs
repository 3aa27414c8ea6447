//! Topic names and topic filters: validation and matching (MQTT 3.1.1 section 4.7, MQTT 5.0 section 4.7).

/// Why a topic name or filter is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// Topic names and filters must be at least one character long [MQTT-4.7.3-1].
    Empty,
    /// A topic name must not contain wildcard characters [MQTT-3.3.2-2].
    WildcardInName,
    /// `#` must be the last character, alone in its level [MQTT-4.7.1-2].
    MisplacedMultiLevel,
    /// `+` must occupy an entire level [MQTT-4.7.1-3].
    MisplacedSingleLevel,
    /// U+0000 is not allowed [MQTT-4.7.3-2].
    NullCharacter,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TopicError::Empty => "topic is empty [MQTT-4.7.3-1]",
            TopicError::WildcardInName => "topic name contains a wildcard [MQTT-3.3.2-2]",
            TopicError::MisplacedMultiLevel => "'#' is not alone as the last level [MQTT-4.7.1-2]",
            TopicError::MisplacedSingleLevel => "'+' does not occupy a whole level [MQTT-4.7.1-3]",
            TopicError::NullCharacter => "topic contains U+0000 [MQTT-4.7.3-2]",
        })
    }
}

impl std::error::Error for TopicError {}

/// Checks a topic name used in PUBLISH (and in a will).
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter used in SUBSCRIBE and UNSUBSCRIBE.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevel);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevel);
        }
    }
    Ok(())
}

/// Whether `topic` (a valid topic name) matches `filter` (a valid topic filter).
///
/// A filter starting with a wildcard does not match a topic starting with `$` [MQTT-4.7.2-1].
/// `a/#` also matches `a` [MQTT-4.7.1-2]. Allocation free.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_the_spec_examples_say() {
        // Examples of [MQTT-4.7.1-2] and [MQTT-4.7.1-3].
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b/c"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn leading_wildcards_never_match_dollar_topics() {
        // [MQTT-4.7.2-1]
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(matches("$SYS/broker/+", "$SYS/broker/uptime"));
    }

    #[test]
    fn malformed_filters_are_refused() {
        assert_eq!(validate_topic_filter("a/#/b"), Err(TopicError::MisplacedMultiLevel));
        assert_eq!(validate_topic_filter("a#"), Err(TopicError::MisplacedMultiLevel));
        assert_eq!(validate_topic_filter("a+"), Err(TopicError::MisplacedSingleLevel));
        assert_eq!(validate_topic_filter("a/+b/c"), Err(TopicError::MisplacedSingleLevel));
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_filter("a\0"), Err(TopicError::NullCharacter));
        assert!(validate_topic_filter("+/+/#").is_ok());
        assert!(validate_topic_filter("/").is_ok());
    }

    #[test]
    fn topic_names_refuse_wildcards_and_nul() {
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert!(validate_topic_name("a/b c/d").is_ok());
    }
}
