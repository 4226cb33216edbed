"""Load benchmarks run against a live Agentry server; see README.md."""

# Shared by the runner and the seeder. The runner never imports the seeder: importing the
# app builds its engine from the environment, which belongs to the server process.
PAGE_SIZE = 50
# Long threads hold a full first page and a full second one, the page that is measured.
PAGING_THREAD_MESSAGES = 150
