"""Operations: health, Prometheus metrics and structured logs."""
