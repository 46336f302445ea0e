module github.com/crivet/crivet/test/conformance/tools

go 1.26.0
