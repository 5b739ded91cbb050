"""The soak and fault suite: a seeded book operated for simulated business days on a real
deployment while seeded faults hit it, checked against records the package does not write
(``make soak``; a short profile runs inside ``make test``). See RELIABILITY.md."""
