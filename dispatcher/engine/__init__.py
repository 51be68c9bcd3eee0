"""The delivery engine: what every channel's send path shares.

- :mod:`~dispatcher.engine.bus`: the typed event bus the service's collaborators
  talk through (results for the automations, outcomes for the campaigns), instead
  of references to each other.
- :mod:`~dispatcher.engine.retries`: bounded retries of refused attempts, with
  exponential backoff, the same for texts and calls.
- :mod:`~dispatcher.engine.parking`: provider reports that arrive before their send
  is recorded as taken, held (bounded) until it is.

The deadline scheduler that paces every pacing key (a sending number, a voice
account) is :mod:`dispatcher.engine.scheduler`; the transition judge every kind shares is
:mod:`dispatcher.core.transitions`.
"""
