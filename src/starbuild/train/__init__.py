"""Training: the token DataModule, the LightningModule, loss curves and the `train` stage."""
