"""Write the training corpus of attncli's embedded model: short English stories made
from a fixed vocabulary by a seeded generator, so the same command gives the same bytes.

    python examples/make_corpus.py --out corpus/             # ~8 MB train.txt + valid.txt
    python examples/make_corpus.py --out /tmp/c --size-mb 0.5 --seed 7

Why a corpus of our own: the model must ship inside the package, train in minutes on
two CPU cores, and still show attention doing something one can check. The stories
are built so that it does:

- every story has at most one character per pronoun (one "he", one "she", one "it",
  one "they"), so each pronoun has exactly one antecedent;
- what follows a pronoun depends on who it is ("The dog ... It barked." but
  "The kite ... It flew high."), so a model that predicts the next word well must
  look back from the pronoun to its noun, which is what `attncli inspect-mask
  --weights` then shows.

Output: ``train.txt`` and ``valid.txt``, one story per line, each ending with the
end-of-text token. The validation stories come from an independent random stream
(same seed, other purpose) and none of them also occurs in ``train.txt``.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

EOT = "<|endoftext|>"


# ---- who can be in a story -------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """A noun and what can be said of it. ``pron`` is he / she / it / they."""

    noun: str
    pron: str
    looks: tuple[str, ...]  # adjectives: "It was fluffy."
    does: tuple[str, ...]  # its own actions, past tense: "It barked."
    likes: tuple[str, ...] = ()  # things it likes: "She liked her book."


def kinds(pron: str, table: dict[str, tuple[str, str, str]]) -> list[Kind]:
    return [Kind(noun, pron, tuple(a.split(", ")), tuple(d.split("; ")), tuple(l.split(", ")))
            for noun, (a, d, l) in table.items()]


HE = kinds("he", {
    "boy": ("little, happy, brave", "kicked the ball; climbed a tree; ran very fast", "ball, bike, drum"),
    "man": ("tall, old, kind", "fixed the fence; read the paper; chopped some wood", "hat, pipe, boat"),
    "king": ("rich, old, wise", "sat on his throne; ruled the land; wore a gold crown", "crown, castle, horse"),
    "prince": ("young, brave, proud", "rode his horse; waved to the people; held a sword", "sword, horse, castle"),
    "farmer": ("busy, strong, kind", "fed the cows; planted some seeds; drove his tractor", "tractor, hat, apple"),
    "fisherman": ("old, patient, quiet", "caught a big fish; fixed his net; sailed out to sea", "boat, net, fish"),
    "knight": ("brave, strong, bold", "fought the dragon; polished his shield; rode to the castle", "shield, sword, horse"),
    "wizard": ("wise, old, strange", "waved his wand; read a magic book; made a potion", "wand, book, hat"),
})
SHE = kinds("she", {
    "girl": ("little, happy, clever", "jumped over the puddle; drew a picture; sang a song", "doll, kite, book"),
    "woman": ("tall, kind, busy", "baked some bread; planted some flowers; washed the dishes", "garden, cup, hat"),
    "queen": ("rich, wise, proud", "sat on her throne; wore a silver crown; gave a speech", "crown, castle, garden"),
    "princess": ("young, brave, kind", "danced in the hall; rode her pony; looked out of the window", "pony, dress, garden"),
    "teacher": ("kind, patient, clever", "read a story; wrote on the board; rang the bell", "book, bell, apple"),
    "grandma": ("old, kind, gentle", "knitted a scarf; baked a pie; told a story", "scarf, pie, cup"),
    "witch": ("old, strange, clever", "stirred her pot; flew on her broom; cast a spell", "broom, pot, cat"),
    "nurse": ("kind, busy, gentle", "helped a sick child; wrapped a bandage; smiled warmly", "bag, cup, book"),
})
IT_ANIMALS = kinds("it", {
    "cat": ("fluffy, soft, sleepy", "purred loudly; chased a mouse; licked its paws", "milk, fish, yarn"),
    "dog": ("friendly, brown, playful", "barked loudly; wagged its tail; dug a hole", "bones, ball, stick"),
    "bird": ("small, blue, pretty", "sang a sweet song; flew over the trees; built a nest", "seeds, nest, song"),
    "fox": ("red, quick, sly", "ran into the woods; hid behind a rock; sniffed the air", "berries, den, tail"),
    "rabbit": ("white, soft, shy", "hopped across the grass; ate a carrot; twitched its nose", "carrots, lettuce, hole"),
    "frog": ("green, slimy, small", "croaked all night; jumped into the pond; caught a fly", "flies, pond, rock"),
    "horse": ("big, strong, fast", "galloped across the field; ate some hay; shook its mane", "hay, apple, field"),
    "owl": ("wise, grey, quiet", "hooted in the dark; watched from the branch; flew at night", "berries, branch, moon"),
    "pig": ("pink, fat, muddy", "rolled in the mud; ate all the food; oinked happily", "mud, corn, food"),
    "bear": ("big, brown, hungry", "ate some honey; slept in its cave; climbed a tree", "honey, fish, cave"),
    "mouse": ("tiny, grey, quick", "squeaked softly; ate a piece of cheese; ran into its hole", "cheese, crumbs, hole"),
    "duck": ("yellow, small, noisy", "quacked loudly; swam in the pond; waddled to the water", "bread, pond, water"),
})
IT_THINGS = kinds("it", {
    "ball": ("round, red, bouncy", "rolled down the hill; bounced very high; rolled under the bed", ""),
    "kite": ("colorful, light, big", "flew high in the sky; danced in the wind; got stuck in a tree", ""),
    "boat": ("small, wooden, old", "floated on the water; sailed across the lake; rocked in the waves", ""),
    "cake": ("sweet, big, warm", "smelled very good; had a cherry on top; was gone in a minute", ""),
    "box": ("heavy, brown, old", "was full of toys; sat in the corner; had a red ribbon", ""),
    "drum": ("loud, round, old", "went boom boom; was very loud; made the baby laugh", ""),
    "lamp": ("bright, small, old", "glowed in the dark; lit up the room; flickered at night", ""),
    "tree": ("tall, green, old", "gave cool shade; swayed in the wind; dropped its leaves", ""),
    "apple": ("red, shiny, sweet", "tasted very sweet; fell on the ground; was crunchy", ""),
    "hat": ("blue, funny, big", "blew away in the wind; was too big; had a long feather", ""),
})
THEY = kinds("they", {
    "children": ("happy, noisy, tired", "played in the park; laughed and sang; built a sandcastle", "candy, toys, games"),
    "ducks": ("yellow, noisy, small", "quacked all day; swam in a line; waddled to the pond", "bread, water, pond"),
    "bees": ("busy, small, buzzing", "buzzed around the flowers; made sweet honey; flew back to the hive", "sugar, flowers, honey"),
    "ants": ("tiny, busy, strong", "carried some crumbs; marched in a line; dug a tunnel", "crumbs, sugar, leaves"),
    "kittens": ("fluffy, small, playful", "played with the yarn; chased their tails; slept in a basket", "milk, yarn, basket"),
    "puppies": ("small, happy, playful", "chased each other; barked at the cat; rolled in the grass", "bones, balls, sticks"),
    "sheep": ("white, woolly, quiet", "ate the green grass; stayed close together; followed the farmer", "grass, hay, field"),
    "friends": ("kind, happy, young", "shared their lunch; played a game; went for a walk", "cake, games, books"),
})
HE_NAMES = ["Tom", "Ben", "Sam", "Max", "Leo", "Jack", "Tim", "Bob"]
SHE_NAMES = ["Lily", "Mia", "Anna", "Lucy", "Emma", "Rose", "Sue", "Kate"]

PLACES = ["park", "forest", "beach", "farm", "garden", "river", "village", "market", "hill", "lake", "city", "meadow"]
HOMES = ["small house", "big castle", "little cottage", "old barn", "tall tower", "quiet village"]
SURFACES = ["mat", "rug", "bed", "chair", "sofa", "wall", "fence", "step", "box", "table"]
WHEN = ["One day", "One morning", "One sunny day", "Later that day", "That evening", "The next day", "In the morning"]
WEATHER = ["the sun was shining", "it was raining", "the wind was blowing", "it was very cold", "the sky was blue"]
FEELINGS = ["happy", "sad", "scared", "tired", "excited", "hungry", "surprised", "proud"]
SAYINGS = ["I like it here", "Look at that", "This is fun", "I am hungry", "Let us play", "What a nice day",
           "I am not scared", "Come with me", "It is time to go home", "I want to go to the {place}"]
ENDINGS = ["The end.", "They lived happily ever after.", "It was a good day.", "Everyone was happy."]

SUBJ = {"he": "he", "she": "she", "it": "it", "they": "they"}
POSS = {"he": "his", "she": "her", "it": "its", "they": "their"}
OBJ = {"he": "him", "she": "her", "it": "it", "they": "them"}
BE = {"he": "was", "she": "was", "it": "was", "they": "were"}


# ---- a story: a few characters, each a different pronoun ---------------------------------
@dataclass
class Char:
    kind: Kind
    name: str | None = None  # persons sometimes have one: "a girl named Lily"
    said: bool = False  # introduced yet?
    adj: str = ""  # the adjective it was introduced with, not to be repeated at once

    @property
    def pron(self) -> str:
        return self.kind.pron

    @property
    def animate(self) -> bool:
        return self.kind not in IT_THINGS_SET

    def the(self) -> str:
        """How the story names it after the introduction."""
        return self.name or f"the {self.kind.noun}"


IT_THINGS_SET = frozenset(IT_THINGS)


def a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


@dataclass
class Story:
    rng: random.Random
    chars: list[Char] = field(default_factory=list)
    out: list[str] = field(default_factory=list)

    def say(self, sentence: str) -> None:
        sentence = cap(sentence)
        if sentence not in self.out:  # the same sentence twice reads as a glitch
            self.out.append(sentence)

    def pick(self, seq):
        return self.rng.choice(seq)

    # the subject of a sentence about c: mostly its pronoun, sometimes its name again
    def subj(self, c: Char, pronoun_share: float = 0.75) -> str:
        return SUBJ[c.pron] if self.rng.random() < pronoun_share else c.the()

    # ---- sentence shapes ----
    def introduce(self, c: Char, other: Char | None) -> None:
        k, r = c.kind, self.rng
        adj = c.adj = self.pick(k.looks)
        if other is None:
            shapes = [
                lambda: f"once upon a time, there was {a(adj + ' ' + k.noun)}.",
                lambda: f"{self.pick(WHEN).lower()}, {a(k.noun)} went to the {self.pick(PLACES)}.",
                lambda: f"{a(adj + ' ' + k.noun)} lived in {a(self.pick(HOMES))}.",
            ]
            if c.animate and k.pron != "they":
                shapes.append(lambda: f"the {k.noun} sat on the {self.pick(SURFACES)}.")
            if k.pron == "they":
                shapes = [
                    lambda: f"once upon a time, there were some {adj} {k.noun}.",
                    lambda: f"{self.pick(WHEN).lower()}, the {k.noun} went to the {self.pick(PLACES)}.",
                    lambda: f"some {k.noun} lived near the {self.pick(PLACES)}.",
                ]
            if c.name:
                shapes = [
                    lambda: f"once upon a time, there was {a(k.noun)} named {c.name}.",
                    lambda: f"{c.name} was {a(adj + ' ' + k.noun)}.",
                    lambda: f"there was {a(adj + ' ' + k.noun)} called {c.name}.",
                ]
            self.say(r.choice(shapes)())
        else:
            desc = f"some {k.noun}" if k.pron == "they" else a(k.noun)
            shapes = [
                lambda: f"{self.pick(WHEN).lower()}, {other.the()} saw {desc} near the {self.pick(PLACES)}.",
                lambda: f"{other.the()} found {desc} by the {self.pick(PLACES)}.",
                lambda: f"at the {self.pick(PLACES)}, {other.the()} met {desc}.",
            ]
            if other.kind.pron in ("he", "she") and k.pron == "it":
                shapes.append(lambda: f"{other.the()} had {a(adj + ' ' + k.noun)}.")
            self.say(r.choice(shapes)())
            if c.name:
                self.say(f"{SUBJ[k.pron]} {BE[k.pron]} called {c.name}.")
        c.said = True

    def describe(self, c: Char) -> None:
        adj = self.pick([x for x in c.kind.looks if x != c.adj])
        self.say(f"{self.subj(c, 0.9)} {BE[c.pron]} {adj}.")

    def act(self, c: Char) -> None:
        self.say(f"{self.subj(c)} {self.pick(c.kind.does)}.")

    def act_and_describe(self, c: Char) -> None:
        self.say(f"{self.subj(c)} {self.pick(c.kind.does)} and {BE[c.pron]} very {self.pick(c.kind.looks)}.")

    def likes(self, c: Char) -> None:
        if not c.kind.likes or not c.kind.likes[0]:
            return self.describe(c)
        thing = self.pick(c.kind.likes)
        verb = self.pick(["liked", "loved", "wanted"])
        if self.rng.random() < 0.5:
            self.say(f"{self.subj(c)} {verb} {POSS[c.pron]} {thing}.")
        else:
            self.say(f"{self.subj(c)} {verb} the {thing} very much.")

    def feels(self, c: Char) -> None:
        feeling = self.pick(FEELINGS)
        why = self.pick([f"{self.pick(WEATHER)}", f"{POSS[c.pron]} friend was there", "it was a long day"])
        self.say(f"{self.subj(c)} {BE[c.pron]} {feeling} because {why}.")

    def speaks(self, c: Char) -> None:
        line = self.pick(SAYINGS).format(place=self.pick(PLACES))
        end = self.pick(["!", "."])
        verb = "said"
        if self.rng.random() < 0.3:
            line, end, verb = self.pick(["Where are you going", "Can I play too", "What is that", "Are you my friend"]), "?", "asked"
        if self.rng.random() < 0.4:  # "..." said the girl.
            self.say(f'"{line}{"," if end == "." else end}" {verb} {c.the()}.')
        else:  # She said, "..."
            self.say(f'{self.subj(c, 0.5)} {verb}, "{line}{end}"')

    def meets(self, c: Char, d: Char) -> None:
        """Two characters in one sentence, then a pronoun that only one of them fits."""
        if c.animate and d.kind in IT_ANIMALS + THEY:
            food = d.kind.likes[0]  # a food, said with "some"
            self.say(f"{c.the()} gave {d.the()} some {food}.")
        elif c.animate and c.kind.pron != "it":
            self.say(f"{c.the()} {self.pick(['looked at', 'played with', 'smiled at', 'walked to'])} {d.the()}.")
        else:
            self.say(f"{c.the()} was near {d.the()}.")
        follow = self.pick([self.act, self.describe, self.act])
        follow(self.pick([c, d]))

    def together(self, c: Char, d: Char) -> None:
        """'The girl and the dog ... They ...': only when no group is in the story."""
        self.say(f"{c.the()} and {d.the()} went to the {self.pick(PLACES)} together.")
        self.say(f"they {self.pick(['played all day', 'had a lot of fun', 'were very happy', 'sat in the shade'])}.")

    def time_passes(self, c: Char) -> None:
        opener = self.pick(["then", "after that", "soon", "later", f"when {self.pick(WEATHER)}"])
        self.say(f"{opener}, {self.subj(c)} {self.pick(c.kind.does)}.")


def make_story(rng: random.Random) -> str:
    s = Story(rng)
    n = rng.choice([1, 2, 2, 2, 3, 3])
    # persons lead most stories; each pronoun at most once
    pools = {"he": HE, "she": SHE, "it": IT_ANIMALS if rng.random() < 0.7 else IT_THINGS, "they": THEY}
    order = ["he", "she", "it", "they"]
    first = rng.choice(["he", "she", "he", "she", "it", "they"])
    rest = [p for p in order if p != first]
    rng.shuffle(rest)
    for pron in [first] + rest[: n - 1]:
        kind = rng.choice(pools[pron])
        name = None
        if pron in ("he", "she") and rng.random() < 0.4:
            name = rng.choice(HE_NAMES if pron == "he" else SHE_NAMES)
        s.chars.append(Char(kind, name))

    lead = s.chars[0]
    s.introduce(lead, None)
    for step in range(rng.randint(1, 2)):
        rng.choice([s.describe, s.act, s.likes])(lead)
    for c in s.chars[1:]:
        s.introduce(c, lead)
        rng.choice([s.describe, s.act, s.likes, s.act_and_describe])(c)
    cast = s.chars
    has_group = any(c.pron == "they" for c in cast)
    for _ in range(rng.randint(2, 5)):
        c = rng.choice(cast)
        shape = rng.choice(["act", "act", "describe", "feels", "speaks", "likes", "time", "meets", "both"])
        if shape == "meets" and len(cast) > 1:
            d = rng.choice([x for x in cast if x is not c])
            s.meets(c, d)
        elif shape == "both" and len(cast) > 1 and not has_group and c.animate:
            s.together(c, rng.choice([x for x in cast if x is not c]))
        else:
            {"act": s.act, "describe": s.describe, "feels": s.feels, "speaks": s.speaks, "likes": s.likes,
             "time": s.time_passes, "act_and_describe": s.act_and_describe}.get(shape, s.act)(c)
    if rng.random() < 0.6:
        s.say(rng.choice(ENDINGS))
    return " ".join(s.out)


def stories(seed: int, purpose: str):
    """An endless, reproducible stream of stories. String seeds are hashed with SHA-512
    by `random`, so the stream does not depend on PYTHONHASHSEED or the platform."""
    rng = random.Random(f"attncli-corpus-{seed}-{purpose}")
    while True:
        yield make_story(rng)


def write_corpus(out: Path, *, size_bytes: int, valid_stories: int, seed: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    valid: list[str] = []
    seen_valid: set[str] = set()
    for story in stories(seed, "valid"):
        if len(valid) == valid_stories:
            break
        if story not in seen_valid:
            seen_valid.add(story)
            valid.append(story)
    train_bytes = 0
    n_train = 0
    with open(out / "train.txt", "w", encoding="utf-8", newline="\n") as f:
        for story in stories(seed, "train"):
            if train_bytes >= size_bytes:
                break
            if story in seen_valid:  # held-out means held out
                continue
            line = story + EOT + "\n"
            f.write(line)
            train_bytes += len(line.encode("utf-8"))
            n_train += 1
    (out / "valid.txt").write_text("".join(s + EOT + "\n" for s in valid), encoding="utf-8", newline="\n")
    return {"train_stories": n_train, "train_bytes": train_bytes, "valid_stories": len(valid)}


def read_stories(path: Path) -> list[str]:
    """The stories of a corpus file, without their end-of-text markers."""
    text = path.read_text(encoding="utf-8")
    return [s.strip() for s in text.split(EOT) if s.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for train.txt and valid.txt")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size-mb", type=float, default=8.0, help="size of train.txt in MB (default 8)")
    size.add_argument("--size-kb", type=float, help="size of train.txt in kB (small test corpora)")
    p.add_argument("--valid-stories", type=int, default=1000, help="held-out stories in valid.txt (default 1000)")
    p.add_argument("--seed", type=int, default=1, help="the corpus seed (default 1)")
    args = p.parse_args(argv)
    size_bytes = int(args.size_kb * 1000) if args.size_kb is not None else int(args.size_mb * 1_000_000)
    info = write_corpus(args.out, size_bytes=size_bytes, valid_stories=args.valid_stories, seed=args.seed)
    print(f"wrote {info['train_stories']:,} training stories ({info['train_bytes']:,} bytes) and "
          f"{info['valid_stories']:,} held-out stories to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
