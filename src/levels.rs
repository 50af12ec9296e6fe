//! The two scales a trip is graded on: its severity (info, warning,
//! critical) and its mode (enforce, dry-run, alert-only).
//!
//! Below every stage: the configuration sets a default mode, policies set
//! both, the decision carries them, the guard and alerts read them. Also
//! [`named_enum!`], for an enum whose variants are written as names.

/// An enum whose every variant has one name, written once: the enum, its
/// `CHOICES` (name and variant, in order, for readers of configuration and
/// journal text), `as_str`, `Display`, and `Serialize` as that name.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$doc:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$doc])* $variant,)+
        }

        impl $name {
            /// Every variant with its name, in declaration order.
            pub const CHOICES: [(&'static str, $name); [$($text),+].len()] =
                [$(($text, $name::$variant)),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use named_enum;

named_enum! {
    /// How serious a trip is; passed to alerts and the decision.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Severity {
        Info = "info",
        Warning = "warning",
        Critical = "critical",
    }
}

named_enum! {
    /// What happens to a trip: acted on, only alerted, or prepared but never broadcast.
    ///
    /// Modes are ordered from most to least permissive; where a policy and the
    /// global configuration disagree, the more cautious one wins (see [`Mode::most_cautious`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Mode {
        /// The action is sent (after the guard approves it).
        Enforce = "enforce",
        /// Everything up to signing runs; nothing is broadcast.
        DryRun = "dry-run",
        /// Only an alert is raised; no transaction is built.
        AlertOnly = "alert-only",
    }
}

impl Mode {
    fn caution(self) -> u8 {
        match self {
            Mode::Enforce => 0,
            Mode::DryRun => 1,
            Mode::AlertOnly => 2,
        }
    }
    /// The more cautious of two modes.
    pub fn most_cautious(self, other: Mode) -> Mode {
        if other.caution() > self.caution() {
            other
        } else {
            self
        }
    }
}
