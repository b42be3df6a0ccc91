"""lyra.discord: a Discord bot over one lyra pipeline (docs/discord.md):
python -m lyra.discord --model-config FILE, with $DISCORD_TOKEN. Needs
discord.py: pip install "lyra-llm[discord]". split_message (split.py) is
importable without it."""
from .split import split_message

__all__ = ["split_message"]
