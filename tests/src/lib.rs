//! Support for the end-to-end tests: spawning real nodewarden processes.
