//! The command line's names for the core's enums: the core types know nothing of clap, and
//! this file gives each the value names and help its flags show (the same names the derive
//! would give, so flags, presets and records keep their spelling).

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::engine::SplitMode;
use crate::eval::niah::grid::{Method, Style, Variant};
use crate::prompt::Protect;
use crate::settings::Positions;
use crate::tools::synth::WeightType;

/// `impl ValueEnum for T` from `Variant => "name", "help"` lines.
macro_rules! value_enum {
    ($ty:ident { $($variant:ident => $name:literal $(, $help:literal)?;)* }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($ty::$variant),*]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($ty::$variant => PossibleValue::new($name)$(.help($help))?,)*
                })
            }
        }
    };
}

value_enum!(SplitMode {
    None => "none", "One device (`-mg`) holds the whole offloaded model";
    Layer => "layer", "Layers (and their KV cache) split over the devices, in `-ts` proportions";
    Row => "row", "As layer, with matrix rows split too where the backend supports it (CUDA)";
});

value_enum!(Protect {
    All => "all", "Template scaffolding, system prompt and `-p` text are kept; top-k is chosen from the `-f` context only";
    None => "none", "The reference: selection over every prompt token";
});

value_enum!(Positions {
    Compact => "compact", "At 0..k-1, a fresh short prompt (GemFilter's reference code)";
    Original => "original", "Where they stood in the prompt, gaps and all (SpecPrefill); generation goes on after the prompt's last position";
});

value_enum!(Method {
    Full => "full", "The whole prompt";
    Gem => "gem", "GemFilter: filter pass, top-k, answer from the selection";
    Reference => "reference", "GemFilter at the same layer with the paper's scoring (reference, pool 5, one layer), to compare the chosen scoring against";
});

value_enum!(Style {
    Plain => "plain", "Raw completion: `<context>\\n\\nQuestion: <q> Answer:` (what both small models answer)";
    Primed => "primed", "Plain, with the start of the answer sentence after `Answer:` (the needle's `lead`), so a small model continues with the fact instead of ending its turn. Multi-needle cells get no lead";
    Book => "book", "The GemFilter harness's raw prompt: `This is a very long story book: <book> … </book>.`";
    Chat => "chat", "The model's chat template with the reference harness's system prompt and instruction";
});

value_enum!(Variant {
    Single => "single", "One needle, asked";
    Distractors => "distractors", "The needle plus two others from the set (at other depths); only the first is asked";
    Multi => "multi", "Three needles, all asked in one question; scores and recall average over them";
});

value_enum!(WeightType {
    Q4_0 => "q4_0";
    Q4_K => "q4_k";
    Q8_0 => "q8_0";
    F16 => "f16";
    F32 => "f32";
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the ones flags, presets and records already use.
    #[test]
    fn names_round_trip() {
        fn names<T: ValueEnum>() -> Vec<String> {
            T::value_variants()
                .iter()
                .map(|v| v.to_possible_value().unwrap().get_name().to_owned())
                .collect()
        }
        assert_eq!(names::<SplitMode>(), ["none", "layer", "row"]);
        assert_eq!(names::<Protect>(), ["all", "none"]);
        assert_eq!(names::<Positions>(), ["compact", "original"]);
        assert_eq!(names::<Method>(), ["full", "gem", "reference"]);
        assert_eq!(names::<Style>(), ["plain", "primed", "book", "chat"]);
        assert_eq!(names::<Variant>(), ["single", "distractors", "multi"]);
        assert_eq!(
            names::<WeightType>(),
            ["q4_0", "q4_k", "q8_0", "f16", "f32"]
        );
        assert_eq!(
            Positions::from_str("original", false).unwrap(),
            Positions::Original
        );
    }
}
