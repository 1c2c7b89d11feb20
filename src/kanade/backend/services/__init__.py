"""Use cases behind the API: each raises domain errors and never knows HTTP."""
