//! A node's name, checked: it names files and directories.

/// What is wrong with a node's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeNameError {
    #[error("must have 1 to 253 bytes")]
    Length,
    #[error(
        "has the character {0:?}; node names may only use A-Z a-z 0-9 . _ - (they name directories)"
    )]
    Character(char),
    #[error("starts with '.' or '-'; it names a directory")]
    Start,
}

/// A node's name, safe as a directory name: 1-253 bytes of
/// `[A-Za-z0-9._-]`, not starting with `.` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    pub fn parse(s: &str) -> std::result::Result<Self, NodeNameError> {
        if s.is_empty() || s.len() > 253 {
            return Err(NodeNameError::Length);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(NodeNameError::Character(c));
        }
        if s.starts_with('.') || s.starts_with('-') {
            return Err(NodeNameError::Start);
        }
        Ok(NodeName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["hdss7-21", "node.example.com", "n_1"] {
            assert!(NodeName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "-x", "a/b", "a b", "../x", "nöde"] {
            assert!(NodeName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
