//! The needle set: the reference needle of the NIAH and GemFilter harnesses, plus our own
//! needle/question pairs (numbers, names, multi-word facts). `answer` is what the exact-substring
//! scorer looks for (case-insensitive); the word-overlap scorer compares against `text`.

/// One fact to hide and the question that asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needle {
    pub id: &'static str,
    pub text: &'static str,
    pub question: &'static str,
    pub answer: &'static str,
    /// Start of an answer sentence, for the `primed` prompt style (small base models often
    /// end their turn at once when given only `Answer:`).
    pub lead: &'static str,
}

const fn n(
    id: &'static str,
    text: &'static str,
    question: &'static str,
    answer: &'static str,
    lead: &'static str,
) -> Needle {
    Needle {
        id,
        text,
        question,
        answer,
        lead,
    }
}

/// The reference needle (gkamradt's NIAH, used unchanged by the GemFilter code).
pub const REFERENCE: Needle = n(
    "sf-sandwich",
    "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
    "What is the best thing to do in San Francisco?",
    "Dolores Park",
    "The best thing to do in San Francisco is",
);

/// Every needle; the reference first.
pub const NEEDLES: &[Needle] = &[
    REFERENCE,
    n(
        "vault-passkey",
        "The secret passkey for the vault is 48213.",
        "What is the secret passkey for the vault?",
        "48213",
        "The secret passkey for the vault is",
    ),
    n(
        "lighthouse-safe",
        "The combination to the lighthouse keeper's safe is 7391.",
        "What is the combination to the lighthouse keeper's safe?",
        "7391",
        "The combination to the lighthouse keeper's safe is",
    ),
    n(
        "wifi-password",
        "The wifi password at the Harbor Street office is tangerine42.",
        "What is the wifi password at the Harbor Street office?",
        "tangerine42",
        "The wifi password at the Harbor Street office is",
    ),
    n(
        "flight-number",
        "Marta's flight to Lisbon is TP1057, leaving from gate 23.",
        "What is the number of Marta's flight to Lisbon?",
        "TP1057",
        "Marta's flight to Lisbon is",
    ),
    n(
        "locker-code",
        "The code for locker 19 in the gym is 5520.",
        "What is the code for locker 19 in the gym?",
        "5520",
        "The code for locker 19 in the gym is",
    ),
    n(
        "museum-founder",
        "The Museum of Small Clocks was founded by Beatrice Okonkwo.",
        "Who founded the Museum of Small Clocks?",
        "Beatrice Okonkwo",
        "The Museum of Small Clocks was founded by",
    ),
    n(
        "cat-name",
        "Professor Lindqvist's cat is named Pumpernickel.",
        "What is the name of Professor Lindqvist's cat?",
        "Pumpernickel",
        "Professor Lindqvist's cat is named",
    ),
    n(
        "ship-captain",
        "The captain of the research ship Albatross is Tomasz Wierzbicki.",
        "Who is the captain of the research ship Albatross?",
        "Wierzbicki",
        "The captain of the research ship Albatross is",
    ),
    n(
        "bakery-owner",
        "The bakery on Fennel Lane is owned by a man called Rufus Delacroix.",
        "Who owns the bakery on Fennel Lane?",
        "Rufus Delacroix",
        "The bakery on Fennel Lane is owned by",
    ),
    n(
        "band-drummer",
        "The drummer of the band Quiet Engines is Priya Ramaswamy.",
        "Who is the drummer of the band Quiet Engines?",
        "Priya Ramaswamy",
        "The drummer of the band Quiet Engines is",
    ),
    n(
        "treasure-location",
        "The treasure is buried under the third olive tree behind the chapel.",
        "Where is the treasure buried?",
        "olive tree",
        "The treasure is buried under",
    ),
    n(
        "favorite-color",
        "Eleanor's favorite color is a deep shade of teal.",
        "What is Eleanor's favorite color?",
        "teal",
        "Eleanor's favorite color is",
    ),
    n(
        "meeting-day",
        "The book club always meets on the second Thursday of the month.",
        "When does the book club meet?",
        "second Thursday",
        "The book club meets on the",
    ),
    n(
        "secret-ingredient",
        "The secret ingredient in Grandma Rosa's soup is smoked paprika.",
        "What is the secret ingredient in Grandma Rosa's soup?",
        "smoked paprika",
        "The secret ingredient in Grandma Rosa's soup is",
    ),
    n(
        "mountain-height",
        "Mount Veltra, the tallest peak on the island, is 2,847 meters high.",
        "How high is Mount Veltra?",
        "2,847",
        "Mount Veltra is",
    ),
    n(
        "train-platform",
        "The night train to Vienna departs from platform 9 at 22:40.",
        "From which platform does the night train to Vienna depart?",
        "platform 9",
        "The night train to Vienna departs from",
    ),
    n(
        "dog-breed",
        "Oscar adopted a three-legged greyhound named Biscuit.",
        "What is the name of the dog Oscar adopted?",
        "Biscuit",
        "The dog Oscar adopted is named",
    ),
    n(
        "planet-name",
        "The astronomers named the new planet Kepler-Orla.",
        "What did the astronomers name the new planet?",
        "Kepler-Orla",
        "The astronomers named the new planet",
    ),
    n(
        "recipe-temperature",
        "The bread must be baked at 230 degrees for exactly 35 minutes.",
        "At what temperature must the bread be baked?",
        "230",
        "The bread must be baked at",
    ),
    n(
        "stolen-painting",
        "The stolen painting was hidden inside a grandfather clock in Antwerp.",
        "Where was the stolen painting hidden?",
        "grandfather clock",
        "The stolen painting was hidden inside",
    ),
    n(
        "company-motto",
        "The motto of the Fairweather Company is 'slow roads, sure arrivals'.",
        "What is the motto of the Fairweather Company?",
        "slow roads",
        "The motto of the Fairweather Company is",
    ),
    n(
        "island-language",
        "The islanders of Moravel speak a language called Tesh.",
        "What language do the islanders of Moravel speak?",
        "Tesh",
        "The islanders of Moravel speak",
    ),
    n(
        "bridge-year",
        "The old stone bridge in Carrow was completed in 1783.",
        "In what year was the old stone bridge in Carrow completed?",
        "1783",
        "The old stone bridge in Carrow was completed in",
    ),
];

/// Look a needle up by id.
#[must_use]
pub fn by_id(id: &str) -> Option<&'static Needle> {
    NEEDLES.iter().find(|n| n.id == id)
}

/// Resolve a `--needles` value: `reference`, `all`, `own` (all but the reference), or ids
/// separated by commas.
///
/// # Errors
/// An unknown id (the message lists the known ones).
pub fn parse_list(s: &str) -> anyhow::Result<Vec<&'static Needle>> {
    match s.trim() {
        "reference" => return Ok(vec![&NEEDLES[0]]),
        "all" => return Ok(NEEDLES.iter().collect()),
        "own" => return Ok(NEEDLES[1..].iter().collect()),
        _ => {}
    }
    let mut out: Vec<&'static Needle> = Vec::new();
    for id in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let Some(found) = by_id(id) else {
            let known: Vec<&str> = NEEDLES.iter().map(|n| n.id).collect();
            anyhow::bail!(
                "unknown needle '{id}' (use reference, all, own, or ids: {})",
                known.join(", ")
            );
        };
        if !out.iter().any(|n| n.id == id) {
            out.push(found);
        }
    }
    anyhow::ensure!(!out.is_empty(), "--needles is empty");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_is_unique_and_answers_are_in_the_needles() {
        assert!(NEEDLES.len() >= 21, "reference + at least 20 own needles");
        for (i, a) in NEEDLES.iter().enumerate() {
            assert!(
                !a.lead.to_lowercase().contains(&a.answer.to_lowercase()),
                "{}: lead gives the answer away",
                a.id
            );
            assert!(
                a.text.to_lowercase().contains(&a.answer.to_lowercase()),
                "{}: answer not in text",
                a.id
            );
            for b in &NEEDLES[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.answer.to_lowercase(), b.answer.to_lowercase());
            }
        }
    }

    #[test]
    fn lists() {
        assert_eq!(parse_list("reference").unwrap()[0].id, "sf-sandwich");
        assert_eq!(parse_list("all").unwrap().len(), NEEDLES.len());
        assert_eq!(
            parse_list("cat-name, vault-passkey,cat-name")
                .unwrap()
                .len(),
            2
        );
        assert!(parse_list("nope")
            .unwrap_err()
            .to_string()
            .contains("unknown needle 'nope'"));
    }
}
