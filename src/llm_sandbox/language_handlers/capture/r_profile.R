# Plot capture inside an R run of an ArtifactSandboxSession. Runs in the sandbox only.
#
# The session points R_PROFILE_USER here and sets LLM_SANDBOX_PLOTS_DIR. Rscript's default
# graphics device becomes a PNG device (480 x 480 pixels, R's default size) writing one numbered
# file per page into that directory; every device opened later gets its own numbers. R closes
# open devices when it quits, which writes the last page. Top-level values, ggplot2 objects
# included, are printed by Rscript as usual, so `ggplot(...) + geom_point()` draws a page.
# R_PROFILE_USER replaces the user's own profile, so ./.Rprofile (else ~/.Rprofile) is sourced
# afterwards, as R would have. Prints nothing.
local({
  plots <- Sys.getenv("LLM_SANDBOX_PLOTS_DIR")
  if (nzchar(plots)) {
    opened <- 0L
    options(device = function(...) {
      opened <<- opened + 1L
      pattern <- file.path(plots, sprintf("r-%04d-%%04d.png", opened))
      grDevices::png(filename = pattern, ...)
    })
  }
})
local({
  own <- if (file.exists(".Rprofile")) ".Rprofile" else file.path(Sys.getenv("HOME"), ".Rprofile")
  if (file.exists(own)) sys.source(own, envir = globalenv())
})
