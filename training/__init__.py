"""The training module (`tagger train`, `tagger evaluate`): the founding report's recipe
(shared/docs/recipe.md) as the defaults, each ablation one option away.

data (MTAT or CSV datasets, the decoded-audio cache), splits (stratified train/valid/test),
config (TrainConfig and the options' choices), train (the loop, checkpoints, the exported
model), evaluate and metrics (the recipe's protocol), augment, losses. The models it trains
are tagger.model.cnn.ShortChunkCNN configs saved with tagger.model.modelfile.save_model(), so
`tagger scan --model RUN/model.safetensors` uses them directly.
"""
