"""Everything around the network: reading data, sampling, evaluating, training, the run folder, and
prediction for new sentences. Imports go one way: aste uses models, models never import aste.

  input_reader.py  ASTE files (D2E2S JSON, raw ASTE-V2) -> Sentence objects; bad examples named
  parsing.py       spaCy dependency parses for sentences that come without one (cached on disk)
  encoding.py      Sentence -> subword ids, word spans, dependency graph, gold arrays
  sampling.py      datasets, SpERT-style negative sampling, collation, batch samplers
  data.py          a run's flags -> datasets and loaders
  evaluator.py     exact-match P/R/F1 (aspect, opinion, entity, pair, triplet) and prediction records
  trainer.py       optimizer and schedule, training epochs, evaluation, the epoch loop
  environment.py   seeding, device and AMP checks, torchrun, versions and commit
  runs.py          the run folder: config, metrics, weights, resume state, lock, load_run
  atomic.py        atomic file writes (with a disk-space check)
  predictor.py     Predictor: triplets for new sentences from a run folder, an exported folder or the Hub
  export.py        a run as a self-contained folder with a model card (Hugging Face conventions)
  cli.py           one-line messages for the errors a user can fix (models.errors.UserError)

    from aste import Predictor
    Predictor.from_pretrained("Results/14res/<run>").predict("The soup was cold but the staff were lovely .")
"""
from .predictor import Predictor

__all__ = ["Predictor"]
