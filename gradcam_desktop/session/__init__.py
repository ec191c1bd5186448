"""Qt-free: between the window (``ui``) and the engine (``core``).

The requests and results that cross (``requests``, ``results``), the engine loop that answers them
(``engine``: scheduler, jobs, caches), the process it runs in (``host``, ``engine_main``,
``transport``), and what the window's side remembers to start a new engine when one dies
(``supervisor``). Nothing here imports Qt; nothing imports TensorFlow at module level.
"""
