"""Container names: Docker's validation and its random "adjective_surname" names."""

import random
import re

from conch.errors import InvalidArgument

_VALID = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_LEFT = ("admiring adoring affectionate agitated amazing angry awesome blissful bold "
         "boring brave busy charming clever cool compassionate competent confident cranky "
         "dazzling determined distracted dreamy eager ecstatic elastic elated elegant "
         "eloquent epic fervent festive flamboyant focused friendly frosty gallant gifted "
         "goofy gracious happy hardcore heuristic hopeful hungry infallible inspiring "
         "jolly jovial keen kind laughing loving lucid magical modest musing mystifying "
         "naughty nervous nice nifty nostalgic objective optimistic peaceful pedantic "
         "pensive practical priceless quirky quizzical relaxed reverent romantic sad "
         "serene sharp silly sleepy stoic strange stupefied suspicious sweet tender "
         "thirsty trusting unruffled upbeat vibrant vigilant vigorous wizardly wonderful "
         "xenodochial youthful zealous zen").split()
_RIGHT = ("agnesi albattani allen almeida archimedes ardinghelli aryabhata austin babbage "
          "banach bardeen bartik bassi bell bhabha blackwell bohr booth borg bose brahmagupta "
          "brown carson chandrasekhar clarke colden cori curie darwin davinci dijkstra "
          "einstein elion engelbart euclid euler faraday fermat fermi feynman franklin "
          "galileo gauss goldberg goodall hamilton hawking heisenberg hermann hodgkin "
          "hopper hypatia jackson jang johnson kalam kepler khorana knuth kowalevski lamport "
          "leakey lovelace lumiere mayer mccarthy mcclintock meitner mendel mirzakhani "
          "montalcini moore morse napier nash newton nobel noether payne perlman pike "
          "poincare ptolemy raman ride ritchie rosalind sammet shannon shockley sinoussi "
          "snyder stonebraker swartz tesla thompson torvalds turing varahamihira villani "
          "wilbur wiles williams wing wozniak wright yalow yonath").split()


def validate(name: str) -> str:
    """Docker's rule; returns the name without a leading '/'."""
    if not _VALID.match(name or ""):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def random_name(is_taken) -> str:
    """A free "adjective_surname" name; ``is_taken(name)`` asks the store."""
    for attempt in range(100):
        name = f"{random.choice(_LEFT)}_{random.choice(_RIGHT)}"
        if attempt > 10:
            name += str(random.randint(0, 99))
        if not is_taken(name):
            return name
    raise InvalidArgument("could not find a free random container name")
