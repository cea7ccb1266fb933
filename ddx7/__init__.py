"""The torch side of dx7tools: differentiable FM synth, TCN decoder, training (grows with later issues)."""
