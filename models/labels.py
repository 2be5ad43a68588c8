"""Class ids shared by the data package (gold labels) and the model (logits): one place for both."""

ENTITY_TYPES = ("none", "aspect", "opinion")  # index = class id of the span classifier
ASPECT, OPINION = ENTITY_TYPES.index("aspect"), ENTITY_TYPES.index("opinion")
SENTIMENTS = ("POS", "NEG", "NEU")  # index = class id of the pair classifier
