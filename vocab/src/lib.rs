//! The vocabulary of the Verdict language, defined once.
//!
//! Every name the language gives to an operation — atoms (`==`, `contains`, `exists`, …),
//! functions (`lower`, `len`, …), arithmetic operators, state windows (`.day`, `.last("90m")`),
//! time fields (`now.hour`) and declared types — is listed here with its spellings and its
//! artifact code. The lexer and the printer (`grammar`), the lowering, the reference format's
//! matcher kinds and the analysis (`compiler`), the artifact encoding, the verifier and the
//! evaluation (`runtime`), and the language server's completion all derive from these tables, so
//! adding an operation is one entry here plus its semantics — never a dozen sites to keep in step.
//!
//! Artifact codes are explicit and never reused: an artifact stores the code, not a position in
//! a list, so reordering or adding entries keeps old codes meaning the same thing.
//!
//! Architecture invariant: this crate depends on nothing; `grammar` and `runtime` (which must not
//! depend on each other) both depend on it.

/// Declares one table: an enum whose variants each carry a static description.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $info:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $value:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every entry, in table order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )* ];

            /// The entry's description.
            pub fn info(self) -> &'static $info {
                match self {
                    $( $name::$variant => {
                        const INFO: $info = $value;
                        &INFO
                    } )*
                }
            }

            /// The artifact code (explicit, stable, never reused).
            pub fn code(self) -> u8 {
                self.info().code
            }

            /// The entry with this artifact code.
            pub fn from_code(code: u8) -> Option<$name> {
                Self::ALL.iter().copied().find(|x| x.code() == code)
            }

            /// The name as the language spells it.
            pub fn name(self) -> &'static str {
                self.info().name
            }

            /// The entry the language spells this way.
            pub fn from_name(name: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|x| x.name() == name)
            }
        }
    };
}

/// How an atom is written and what it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomForm {
    /// `a OP b` with a symbolic operator (`==`, `<`, …).
    Symbol,
    /// `a WORD b` with a word operator (`in`, `contains`, …).
    Word,
    /// `WORD(path)`: whether a path resolves.
    Presence,
    /// A term of type `bool` standing as a condition (an extern predicate call).
    Holds,
}

/// An atom kind.
#[derive(Debug)]
pub struct AtomInfo {
    pub code: u8,
    /// The DSL spelling (`==`, `not in`, `contains`, `exists`); for `Holds`, which the DSL writes
    /// as the term alone, the word the disassembler shows.
    pub name: &'static str,
    /// The reference format's matcher `kind`, when the matcher form can write it.
    pub yaml: Option<&'static str>,
    pub form: AtomForm,
}

vocabulary! {
    /// The kind of an atom (LANGUAGE.md §2 and §5.3).
    pub enum AtomOp: AtomInfo {
        Eq => AtomInfo { code: 1, name: "==", yaml: Some("eq"), form: AtomForm::Symbol },
        Ne => AtomInfo { code: 2, name: "!=", yaml: Some("ne"), form: AtomForm::Symbol },
        Lt => AtomInfo { code: 3, name: "<", yaml: Some("lt"), form: AtomForm::Symbol },
        Le => AtomInfo { code: 4, name: "<=", yaml: Some("lte"), form: AtomForm::Symbol },
        Gt => AtomInfo { code: 5, name: ">", yaml: Some("gt"), form: AtomForm::Symbol },
        Ge => AtomInfo { code: 6, name: ">=", yaml: Some("gte"), form: AtomForm::Symbol },
        In => AtomInfo { code: 7, name: "in", yaml: Some("in"), form: AtomForm::Word },
        NotIn => AtomInfo { code: 8, name: "not in", yaml: Some("not_in"), form: AtomForm::Word },
        Contains => AtomInfo { code: 9, name: "contains", yaml: Some("contains"), form: AtomForm::Word },
        Matches => AtomInfo { code: 10, name: "matches", yaml: Some("regex"), form: AtomForm::Word },
        StartsWith => AtomInfo { code: 11, name: "starts_with", yaml: Some("starts_with"), form: AtomForm::Word },
        EndsWith => AtomInfo { code: 12, name: "ends_with", yaml: Some("ends_with"), form: AtomForm::Word },
        Exists => AtomInfo { code: 13, name: "exists", yaml: Some("exists"), form: AtomForm::Presence },
        Missing => AtomInfo { code: 14, name: "missing", yaml: Some("missing"), form: AtomForm::Presence },
        /// A `bool` term (an extern predicate) as a condition: holds when the term is `true`.
        Holds => AtomInfo { code: 15, name: "holds", yaml: None, form: AtomForm::Holds },
    }
}

impl AtomOp {
    /// The reference format's matcher `kind`, or the DSL name for atoms the matcher form cannot
    /// write.
    pub fn yaml_kind(self) -> &'static str {
        self.info().yaml.unwrap_or(self.info().name)
    }

    /// The atom a reference-format matcher `kind` names.
    pub fn from_yaml_kind(kind: &str) -> Option<AtomOp> {
        Self::ALL.iter().copied().find(|op| op.info().yaml == Some(kind))
    }

    /// Whether the atom has one operand (`exists`, `missing`, a predicate).
    pub fn is_unary(self) -> bool {
        matches!(self.info().form, AtomForm::Presence | AtomForm::Holds)
    }

    /// The binary atom written with this word between its operands (`in`, `contains`, …).
    pub fn from_word(word: &str) -> Option<AtomOp> {
        Self::ALL.iter().copied().find(|op| op.info().form == AtomForm::Word && op.name() == word)
    }

    /// The presence atom called with this name (`exists`, `missing`).
    pub fn from_presence(word: &str) -> Option<AtomOp> {
        Self::ALL.iter().copied().find(|op| op.info().form == AtomForm::Presence && op.name() == word)
    }
}

/// A built-in function.
#[derive(Debug)]
pub struct FuncInfo {
    pub code: u8,
    pub name: &'static str,
    /// What it takes, for messages and completion.
    pub signature: &'static str,
    /// The type of its result (when it is defined).
    pub returns: TypeName,
    pub doc: &'static str,
}

vocabulary! {
    /// The built-in functions of terms (LANGUAGE.md §5.1). Each takes one argument.
    pub enum Func: FuncInfo {
        Lower => FuncInfo { code: 1, name: "lower", signature: "lower(string) -> string", returns: TypeName::String, doc: "the string in lower case (Unicode case mapping)" },
        Upper => FuncInfo { code: 2, name: "upper", signature: "upper(string) -> string", returns: TypeName::String, doc: "the string in upper case (Unicode case mapping)" },
        Len => FuncInfo { code: 3, name: "len", signature: "len(string | list | object) -> number", returns: TypeName::Number, doc: "code points of a string, elements of a list, keys of an object" },
        Abs => FuncInfo { code: 4, name: "abs", signature: "abs(number) -> number", returns: TypeName::Number, doc: "the absolute value" },
    }
}

/// An arithmetic operator.
#[derive(Debug)]
pub struct ArithInfo {
    pub code: u8,
    pub name: &'static str,
    /// Binding strength: higher binds tighter (`*` over `+`); unary minus binds tightest.
    pub precedence: u8,
}

vocabulary! {
    /// Arithmetic on numbers (LANGUAGE.md §5.1).
    pub enum Arith: ArithInfo {
        Add => ArithInfo { code: 1, name: "+", precedence: 1 },
        Sub => ArithInfo { code: 2, name: "-", precedence: 1 },
        Mul => ArithInfo { code: 3, name: "*", precedence: 2 },
        Div => ArithInfo { code: 4, name: "/", precedence: 2 },
        /// Unary minus.
        Neg => ArithInfo { code: 5, name: "-", precedence: 3 },
    }
}

impl Arith {
    /// The binary operator spelled this way.
    pub fn binary(name: &str) -> Option<Arith> {
        Self::ALL.iter().copied().find(|a| *a != Arith::Neg && a.name() == name)
    }
}

/// A window of a state series.
#[derive(Debug)]
pub struct WindowInfo {
    pub code: u8,
    pub name: &'static str,
    /// A calendar period of the bundle's timezone (else: all time, or sliding).
    pub calendar: bool,
    /// Takes a duration argument (`last("90m")`).
    pub takes_duration: bool,
}

vocabulary! {
    /// What a state read sums (LANGUAGE.md §5.2).
    pub enum Window: WindowInfo {
        Hour => WindowInfo { code: 1, name: "hour", calendar: true, takes_duration: false },
        Day => WindowInfo { code: 2, name: "day", calendar: true, takes_duration: false },
        /// From Monday 00:00.
        Week => WindowInfo { code: 3, name: "week", calendar: true, takes_duration: false },
        Month => WindowInfo { code: 4, name: "month", calendar: true, takes_duration: false },
        Year => WindowInfo { code: 5, name: "year", calendar: true, takes_duration: false },
        Total => WindowInfo { code: 6, name: "total", calendar: false, takes_duration: false },
        /// The updates with time in `(now - d, now]`.
        Last => WindowInfo { code: 7, name: "last", calendar: false, takes_duration: true },
    }
}

/// A field of the evaluation time.
#[derive(Debug)]
pub struct NowInfo {
    pub code: u8,
    pub name: &'static str,
    pub doc: &'static str,
}

vocabulary! {
    /// The fields of `now` (LANGUAGE.md §5.1), in the bundle's timezone except `epoch`.
    pub enum NowField: NowInfo {
        Year => NowInfo { code: 1, name: "year", doc: "the year" },
        Month => NowInfo { code: 2, name: "month", doc: "the month, 1 to 12" },
        Day => NowInfo { code: 3, name: "day", doc: "the day of the month, 1 to 31" },
        Hour => NowInfo { code: 4, name: "hour", doc: "the hour, 0 to 23" },
        Minute => NowInfo { code: 5, name: "minute", doc: "the minute, 0 to 59" },
        Weekday => NowInfo { code: 6, name: "weekday", doc: "the day of the week, 0 = Monday" },
        Epoch => NowInfo { code: 7, name: "epoch", doc: "seconds since 1970-01-01T00:00:00Z" },
    }
}

/// A declared type.
#[derive(Debug)]
pub struct TypeInfo {
    pub code: u8,
    pub name: &'static str,
}

vocabulary! {
    /// The types of schemas and extern signatures (`list<T>` in schemas is `List` with an element).
    pub enum TypeName: TypeInfo {
        String => TypeInfo { code: 1, name: "string" },
        Number => TypeInfo { code: 2, name: "number" },
        Bool => TypeInfo { code: 3, name: "bool" },
        List => TypeInfo { code: 4, name: "list" },
        Object => TypeInfo { code: 5, name: "object" },
        Any => TypeInfo { code: 6, name: "any" },
    }
}

/// The root word of the evaluation-time terms (`now.hour`); `input.now` reaches a request path.
pub const NOW: &str = "now";

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct<T: Copy + Eq + std::fmt::Debug>(items: impl IntoIterator<Item = T>) {
        let v: Vec<T> = items.into_iter().collect();
        for (i, a) in v.iter().enumerate() {
            assert!(!v.iter().skip(i + 1).any(|b| b == a), "duplicate {a:?}");
        }
    }

    #[test]
    fn function_signatures_name_their_result_type() {
        for f in Func::ALL {
            let want = format!(") -> {}", f.info().returns.name());
            assert!(f.info().signature.ends_with(&want), "{}: {}", f.name(), f.info().signature);
        }
    }

    #[test]
    fn codes_and_names_are_distinct_and_round_trip() {
        distinct(AtomOp::ALL.iter().map(|a| a.code()));
        distinct(AtomOp::ALL.iter().map(|a| a.name()));
        distinct(AtomOp::ALL.iter().filter_map(|a| a.info().yaml));
        distinct(Func::ALL.iter().map(|a| a.code()));
        distinct(Func::ALL.iter().map(|a| a.name()));
        distinct(Arith::ALL.iter().map(|a| a.code()));
        distinct(Window::ALL.iter().map(|a| a.code()));
        distinct(Window::ALL.iter().map(|a| a.name()));
        distinct(NowField::ALL.iter().map(|a| a.code()));
        distinct(TypeName::ALL.iter().map(|a| a.code()));
        for a in AtomOp::ALL {
            assert_eq!(AtomOp::from_code(a.code()), Some(*a));
            if let Some(k) = a.info().yaml {
                assert_eq!(AtomOp::from_yaml_kind(k), Some(*a));
            }
        }
        assert_eq!(AtomOp::from_code(0), None);
        assert_eq!(AtomOp::from_word("contains"), Some(AtomOp::Contains));
        assert_eq!(AtomOp::from_word("=="), None);
        assert_eq!(Arith::binary("-"), Some(Arith::Sub));
        assert_eq!(Func::from_name("len"), Some(Func::Len));
    }
}
