"""Hand-written GPU kernels (Triton). Imported lazily: `import replitlm` never imports triton."""
