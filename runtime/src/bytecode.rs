//! The bytecode of condition code, defined once.
//!
//! [`for_each_op!`] lists every instruction with its operands. The [`Op`] enum, the encoder,
//! the decoder, the disassembler and the verifier's operand checks are all generated from that
//! one list, and the VM's dispatch is a `match` on the decoded [`Op`] — so the forms cannot drift
//! (after Pulley's `for_each_op!`).
//!
//! Encoding: a stream of little-endian `u32` words; the first word of an instruction is its
//! opcode, followed by one word per operand.
//!
//! Condition code computes one flag `F`. A condition is a segment ending in `Ret`; rules and
//! definitions point at their segment's first word.

/// Calls `$m!` with the list of instructions: `Name = opcode { operand: kind, ... } "doc"`.
/// Operand kinds: `atom`, `site`, `target` (a code offset), `def`.
#[macro_export]
macro_rules! for_each_op {
    ($m:ident) => {
        $m! {
            /// `F := value of atom` (cached per request), recorded at `site` for traces.
            Atom = 0 { atom: atom, site: site },
            /// `F := true`.
            True = 1 {},
            /// `F := false`.
            False = 2 {},
            /// `F := !F`.
            Not = 3 {},
            /// Jump to `target` when `F` is false (short-circuit of `and`).
            JumpIfFalse = 4 { target: target },
            /// Jump to `target` when `F` is true (short-circuit of `or`).
            JumpIfTrue = 5 { target: target },
            /// `F := value of definition` (its segment runs as a subroutine).
            Call = 6 { def: def },
            /// End of a segment: return to the caller, or finish the condition.
            Ret = 7 {},
        }
    };
}

macro_rules! define_ops {
    ($( $(#[$doc:meta])* $name:ident = $code:literal { $($field:ident : $kind:ident),* } ),* $(,)?) => {
        /// One decoded instruction.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Op {
            $( $(#[$doc])* $name { $($field: u32),* }, )*
        }

        impl Op {
            /// The mnemonic, as the disassembler prints it.
            pub fn name(&self) -> &'static str {
                match self { $( Op::$name { .. } => stringify!($name), )* }
            }

            /// Appends the instruction's words.
            pub fn encode(&self, out: &mut Vec<u32>) {
                match *self {
                    $( Op::$name { $($field),* } => {
                        out.push($code);
                        $( out.push($field); )*
                    } )*
                }
            }

            /// Decodes the instruction at `pc`, returning it and the next `pc`; `None` when the
            /// opcode is unknown or the operands run past the end.
            #[inline]
            pub fn decode(code: &[u32], pc: usize) -> Option<(Op, usize)> {
                let word = *code.get(pc)?;
                #[allow(unused_mut, unused_variables)]
                match word {
                    $( $code => {
                        let mut next = pc + 1;
                        $( let $field = *code.get(next)?; next += 1; )*
                        Some((Op::$name { $($field),* }, next))
                    } )*
                    _ => None,
                }
            }

            /// The operands with their kinds, for the verifier and the disassembler.
            pub fn operands(&self) -> Vec<(&'static str, Operand)> {
                match *self {
                    $( Op::$name { $($field),* } => vec![ $( (stringify!($field), Operand::$kind($field)) ),* ], )*
                }
            }
        }
    };
}

/// An operand with its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Operand {
    atom(u32),
    site(u32),
    target(u32),
    def(u32),
}

for_each_op!(define_ops);

/// Decodes a whole code stream, or the offset of the first undecodable word.
pub fn decode_all(code: &[u32]) -> Result<Vec<(usize, Op)>, usize> {
    let mut out = Vec::new();
    let mut pc = 0;
    while pc < code.len() {
        let (op, next) = Op::decode(code, pc).ok_or(pc)?;
        out.push((pc, op));
        pc = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip() {
        let ops = [
            Op::Atom { atom: 3, site: 9 },
            Op::True {},
            Op::False {},
            Op::Not {},
            Op::JumpIfFalse { target: 7 },
            Op::JumpIfTrue { target: 1 },
            Op::Call { def: 2 },
            Op::Ret {},
        ];
        let mut code = Vec::new();
        for op in &ops {
            op.encode(&mut code);
        }
        let decoded: Vec<Op> = decode_all(&code).unwrap_or_default().into_iter().map(|(_, op)| op).collect();
        assert_eq!(decoded, ops);
        assert_eq!(decode_all(&[99]), Err(0));
        assert_eq!(decode_all(&[4]), Err(0));
    }
}
