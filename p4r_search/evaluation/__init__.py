"""Offline evaluation: ranking metrics and the Persona4Rec leave-one-out protocol (`p4r eval`)."""
