"""Training of the temporal diffusion renderer: dataset builder, model, train, distill, evaluate."""
