"""split: a reply cut into Discord messages (2,000 characters each) without
cutting a code block or a character: a chunk that ends inside a ``` fence
closes it and the next one reopens it with the same language; cuts go at a
line break, else at a space, else anywhere between two characters (Python
strings are code points, so a UTF-8 character is never cut)."""
from typing import List, Optional

LIMIT = 2000
FENCE = "```"
_CLOSE = "\n" + FENCE


def _fence_state(text: str, lang: Optional[str]) -> Optional[str]:
    """The fence state after text, from lang (None: outside a code block;
    a str: inside one opened with that language)."""
    i = 0
    while True:
        j = text.find(FENCE, i)
        if j < 0:
            return lang
        if lang is None:
            end = text.find("\n", j + 3)
            word = text[j + 3:end if end >= 0 else len(text)].strip()
            lang = word if word.isidentifier() or word.replace("-", "").replace("+", "").isalnum() else ""
        else:
            lang = None
        i = j + 3


def split_message(text: str, limit: int = LIMIT) -> List[str]:
    """text as a list of non-empty messages of at most limit characters."""
    if limit < 64:
        raise ValueError("split_message: limit under 64")
    chunks = []
    lang = None
    rest = text
    while rest.strip():
        prefix = f"{FENCE}{lang}\n" if lang is not None else ""
        if len(prefix) + len(rest) <= limit:
            chunks.append(prefix + rest)
            break
        room = limit - len(prefix) - len(_CLOSE)
        cut = rest.rfind("\n", 0, room + 1)
        skip = 1
        if cut < room // 2:
            cut = rest.rfind(" ", 0, room + 1)
            if cut < room // 2:
                cut, skip = room, 0
        # never between the backticks of a fence
        while cut > 0 and rest[cut - 1] == "`" and skip == 0:
            cut -= 1
        if cut <= 0:
            cut, skip = room, 0
        piece = rest[:cut]
        after = _fence_state(piece, lang)
        chunks.append(prefix + piece + (_CLOSE if after is not None else ""))
        lang = after
        rest = rest[cut + skip:]
    return chunks
