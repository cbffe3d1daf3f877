//! A small built-in English vocabulary. It stands in for the `wonderwords` noun, adjective and
//! verb lists that RULER samples from (`nounlist.txt`, `adjectivelist.txt`, `verblist.txt`, about
//! 9,000 words there; a few hundred common ones here). The needle keys of the `niah` tasks are
//! `adjective-noun` pairs of these, as in RULER; `cwe` draws its words from all three lists.
//! Each list is one string of words separated by white space (`words()` splits it), all
//! lower-case ASCII letters; the lists are disjoint and free of repeats (a unit test checks both).

/// Nouns (stand-in for wonderwords `nounlist.txt`).
pub const NOUNS: &str = "
    account acid actor airport album alley anchor angle ankle apple apron arch arena army
    arrow artist attic aunt avenue baby badge bakery ball balloon bamboo banana band bank barn
    barrel basket bath battery beach beam bean bear beard bed bee beetle bell belt bench berry
    bicycle bird blanket blossom boat bone book boot bottle boulder bowl box bracelet brain
    branch bread brick bridge broom brother bubble bucket budget buffalo bulb bull bus bush
    butter button cabin cable cactus cake camel camera camp canal candle cannon canoe canvas
    canyon captain car card carpet carrot castle cat cattle cave ceiling cellar chain chair
    chalk cheese cherry chest chicken child chimney church cinema circle city clock cloud
    coach coast coat coffee coin collar comet compass cook copper coral corn cottage cotton
    country cousin cow crab crane crayon cream creek crow crown cup curtain cushion daisy
    dancer desert desk diamond dinner doctor dog doll dolphin donkey door dragon drawer dream
    dress drum duck eagle earth egg elbow elephant engine envelope eye fabric face factory
    falcon farm father feather fence ferry field finger fire fish flag flame flower flute fog
    forest fork fountain fox frog fruit furnace garage garden garlic garment gate ghost giant
    giraffe glacier glass glove goat gold goose grape grass guitar hall hammer hand harbor hat
    hawk heart hedge helmet hill honey horn horse hospital hotel house island jacket jar jelly
    jewel judge jungle kettle key kitchen kite kitten knife ladder lake lamp lantern lawyer
    leaf lemon letter library lighthouse lion lizard lobster lock magnet mailbox map marble
    market meadow melon mirror monkey moon mountain mouse museum mushroom needle nest net
    newspaper notebook nurse oak ocean office onion orange orchard otter oven owl oyster paint
    palace pan panther paper parrot peach pear pencil penguin pepper piano pickle pigeon
    pillow pilot pine planet plate plum pocket poem pond potato prison pumpkin puppet puzzle
    quilt rabbit radio rainbow raven ribbon rice ring river road robot rocket roof room rope
    rose saddle sailor salad salmon sand school scissors shadow sheep shelf shell ship shirt
    shoe shovel silver singer sister skirt sky snail snake soap sock sofa soldier soup spider
    spoon square squirrel stable stadium star station statue stone storm stove straw stream
    street sugar suitcase sun swan sweater sword table tail teacher temple tent theater thread
    throne thunder ticket tiger tomato tongue tooth torch tower town toy tractor train tree
    truck trumpet tunnel turtle umbrella uncle valley vase village violin wagon wall wallet
    water whale wheat wheel whistle window wine wizard wolf worm yacht yard zebra
";

/// Adjectives (stand-in for wonderwords `adjectivelist.txt`).
pub const ADJECTIVES: &str = "
    able absent ancient angry anxious awful bad bare basic beautiful big bitter black bland
    blue bold boring brave brief bright brilliant broad broken brown busy calm careful
    careless cheap cheerful chilly clean clever close cloudy clumsy cold colorful common cool
    crazy creepy crisp crooked cruel curious curly cute damp dangerous dark dead dear deep
    delicate delightful dense dirty dizzy dry dull dusty eager early easy elegant empty
    enormous equal evil exact excited expensive faint fair faithful famous fancy fast fat
    fierce filthy fine firm flat fluffy foolish fragile free fresh friendly frozen full funny
    fuzzy gentle giddy gigantic glad gloomy glossy good graceful grand gray greasy great green
    grumpy handsome happy hard harsh healthy heavy helpful hollow honest hot huge humble
    hungry icy idle innocent jolly juicy kind large late lazy light little lively lonely long
    loose loud lovely low lucky magic massive mean messy mighty mild misty modern moist muddy
    narrow nasty naughty neat nervous new nice noisy odd old pale patient perfect pink plain
    pleasant polite poor precious pretty proud purple quick quiet rapid rare raw red rich ripe
    rough round royal rude rusty sad safe salty scary secret selfish shallow sharp shiny short
    shy silent silly simple slim slow small smooth soft sour spicy splendid steep sticky stiff
    strange strict strong stupid sturdy sudden sweet swift tall tame tender tense thick thin
    thirsty tidy tiny tired tough ugly warm weak wealthy weary wet white wicked wide wild wise
    witty wooden yellow young zealous
";

/// Verbs (stand-in for wonderwords `verblist.txt`).
pub const VERBS: &str = "
    accept add admire admit advise agree allow announce answer appear argue arrange arrive ask
    attack avoid bake balance beg behave believe boil borrow bounce breathe bring build bury
    calculate carry catch celebrate change chase check choose clap climb collect compare
    complain count cover crawl cry dance decide deliver describe destroy dig discover divide
    drag draw drink drive drop earn eat enjoy enter escape explain explore fail fetch fill
    find fix float fly fold follow forget forgive gather give glow grab greet grow guess guide
    hang happen hate hear help hide hope hover hunt hurry imagine improve invent invite jog
    join juggle jump keep kick knit knock laugh launch lean learn lend lift listen live march
    melt mend move obey offer open pack paddle pour pray promise protect pull punish push
    reach read relax remember repair rescue return ride roar rush scream search sell send
    shiver shout sing sink sit skip sleep slide smile sneeze solve speak spill spin split
    stare steer stir swim swing teach tease thank throw tickle travel trust try tumble twist
    understand unlock vanish visit wait walk wander wash watch wave whisper win wink wish
    wonder worry write yawn yell
";

/// The words of one of the lists above.
pub fn words(list: &'static str) -> impl Iterator<Item = &'static str> {
    list.split_whitespace()
}
